-- Grad-CAM: where in the input a model looked to produce a score.
--
--   local gradcam = require "whorl.gradcam"
--   local heat = gradcam.compute(model, x, {layer = "conv2d_3", score = "class", class = 2})
--   gradcam.figure{path = "gradcam.png", image = x[1][1], heat = heat[1], title = "whorl"}
--   gradcam.conv_layers(model) -> {"conv2d", "conv2d_1", ...}
--   gradcam.overlay(image, heat [, alpha]) -> (3, H, W): heat in jet over the image
--
-- compute(model, input, opts) -> heat, info
--   input  (N, C, H, W), or (C, H, W) / (H, W) for one image
--   heat   (N, H, W) float32, each image normalised to [0, 1] (its maximum is
--          1 unless the map is all zero), upsampled bilinearly to H x W
--   info   {layer = name, score = kind, classes = {k per image} for "class",
--          activation = {C, h, w}}
-- opts:
--   layer  the name of a Conv2d or ConvTranspose2d layer (model:get(name));
--          default: the last conv layer run in the forward whose output has
--          more than one pixel and more than one channel and is not the
--          model's output itself
--   score  what the heat explains, per image (the batch's scores are summed,
--          which gives each image its own gradient: the images of a batch do
--          not interact in eval mode):
--            "mean"    the mean of the output (default for image outputs)
--            "region"  the mean of the output inside region = {x, y, w, h}
--                      (1-based pixels of the output, x the column)
--            "mask"    the mask-weighted mean of the output; mask is (H, W),
--                      (N, H, W) or (N, 1, H, W), e.g. the damage mask
--            "class"   the logit of class = k (a number, or one per image);
--                      default the predicted class (argmax), and the default
--                      score for (N, K) outputs
--            fn        function(output, input) -> a scalar tensor
--
-- The method (Selvaraju et al., "Grad-CAM", ICCV 2017, eq. 1-2): with A the
-- layer's activation (C, h, w) and S the score, the channel weights are
-- alpha_c = mean over (h, w) of dS/dA_c, and the map is ReLU(sum_c alpha_c A_c).
-- The activation is captured with a forward hook and its gradient taken with
-- whorl.grad, which leaves every parameter's .grad as it was; the model runs
-- in eval mode and each module's train/eval mode is restored afterwards.
local whorl = require "whorl"
local nn = require "whorl.nn"

local gradcam = {}

local CONV_TYPES = { Conv2d = true, ConvTranspose2d = true }

local function fail(fmt, ...) error("gradcam: " .. string.format(fmt, ...), 0) end

local function shape_str(t) return "[" .. table.concat(t:size(), ", ") .. "]" end

-- "'functional' (Sequential)": a model named in one line (tostring draws the tree).
local function label(model) return string.format("'%s' (%s)", tostring(model.name), model._type) end

-- The names of the model's conv layers, in the order of named_modules.
function gradcam.conv_layers(model)
    if not nn.is_module(model) then fail("expected a whorl.nn model, got %s", type(model)) end
    local names = {}
    for _, e in ipairs(model:named_modules()) do
        if CONV_TYPES[e[2]._type] then names[#names + 1] = e[2].name end
    end
    return names
end

-- The conv module named `name`, or an error listing the conv layers.
local function find_layer(model, name)
    local convs = gradcam.conv_layers(model)
    local list = #convs > 0 and table.concat(convs, ", ") or "none"
    if type(name) ~= "string" then
        fail("layer must be a layer name (a string), got %s; conv layers: %s", type(name), list)
    end
    local found
    for _, e in ipairs(model:named_modules()) do
        if e[2] ~= model and e[2].name == name then
            if found and found ~= e[2] then fail("two layers of %s are named '%s'", label(model), name) end
            found = e[2]
        end
    end
    if not found then fail("no layer named '%s' in %s (conv layers: %s)", name, label(model), list) end
    if not CONV_TYPES[found._type] then
        fail("layer '%s' is a %s, not a conv layer (conv layers: %s)", name, found._type, list)
    end
    return found
end

-- The input as (N, C, H, W) float.
local function batch_of(input)
    if not whorl.is_tensor(input) then fail("input must be a tensor, got %s", type(input)) end
    local d = input:dim()
    if d == 2 then input = input:view(1, 1, input:size(1), input:size(2))
    elseif d == 3 then input = input:unsqueeze(1)
    elseif d ~= 4 then fail("input must be (N, C, H, W), (C, H, W) or (H, W), got %s", shape_str(input)) end
    local dt = input:dtype()
    if dt ~= "float32" and dt ~= "float64" then input = input:float() end
    return input
end

local function check_opts(opts)
    opts = opts or {}
    if type(opts) ~= "table" then fail("options must be a table, got %s", type(opts)) end
    local allowed = { layer = true, score = true, mask = true, class = true, region = true }
    for k in pairs(opts) do
        if not allowed[k] then
            fail("unknown option '%s' (expected layer, score, mask, class, region)", tostring(k))
        end
    end
    return opts
end

-- t moved to the device of like (a model on a GPU), or t itself.
local function on_device_of(like, t)
    if t.device == like.device then return t end
    return t:to(like.device)
end

-- ---- scores: per-image scores summed over the batch -------------------------------

local function spatial_output(y, kind)
    if y:dim() ~= 4 then
        fail("score '%s' needs an image output (N, C, H, W), got %s", kind, shape_str(y))
    end
end

local function region_score(y, region)
    spatial_output(y, "region")
    if type(region) ~= "table" or #region ~= 4 then
        fail("score 'region' needs region = {x, y, w, h} (1-based pixels), got %s", type(region))
    end
    local x0, y0, w, h = table.unpack(region)
    local H, W = y:size(3), y:size(4)
    for _, v in ipairs(region) do
        if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
            fail("region = {x, y, w, h} must hold integers, got {%s}", table.concat(region, ", "))
        end
    end
    if x0 < 1 or y0 < 1 or w < 1 or h < 1 or x0 + w - 1 > W or y0 + h - 1 > H then
        fail("region {x=%g, y=%g, w=%g, h=%g} does not fit in the %dx%d output", x0, y0, w, h, W, H)
    end
    local inside = y:narrow(3, math.tointeger(y0), math.tointeger(h)):narrow(4, math.tointeger(x0), math.tointeger(w))
    return inside:sum() / (inside:numel() / y:size(1))
end

local function mask_score(y, mask)
    spatial_output(y, "mask")
    if not whorl.is_tensor(mask) then fail("score 'mask' needs mask = a tensor, got %s", type(mask)) end
    local n, H, W = y:size(1), y:size(3), y:size(4)
    local m = mask
    if m:dim() == 2 then m = m:view(1, 1, m:size(1), m:size(2))
    elseif m:dim() == 3 then m = m:unsqueeze(2) end
    local ok = m:dim() == 4 and m:size(2) == 1 and m:size(3) == H and m:size(4) == W
        and (m:size(1) == 1 or m:size(1) == n)
    if not ok then
        fail("mask %s does not fit the output %s (expected (H, W), (N, H, W) or (N, 1, H, W))",
            shape_str(mask), shape_str(y))
    end
    m = on_device_of(y, m:to(y:dtype()):detach())
    local weight = m:sum({ 2, 3, 4 })                        -- (N) or (1)
    if -((-weight):max():item()) <= 0 then
        fail("the mask is empty for some image: the masked mean is undefined")
    end
    -- per image: sum(mask * y) / (sum(mask) * channels)
    local per_image = (y * m):sum({ 2, 3, 4 }) / (weight * y:size(2))
    return per_image:sum()
end

-- The class per image: opts.class (a number or a list) or the argmax.
local function classes_of(y, class)
    local n, k = y:size(1), y:size(2)
    local list = {}
    if class == nil then
        local am = whorl.no_grad(function() return y:argmax(2) end)
        for i = 1, n do list[i] = math.tointeger(am[i]) end
    elseif type(class) == "number" then
        for i = 1, n do list[i] = class end
    elseif type(class) == "table" and #class == n then
        for i = 1, n do list[i] = class[i] end
    else
        fail("class must be a class number (1-based) or a list of %d of them, got %s", n, type(class))
    end
    for i, c in ipairs(list) do
        local whole = type(c) == "number" and c == math.floor(c)
        if not whole or c < 1 or c > k then
            fail("class %s (image %d) is outside 1..%d (the model has %d outputs)", tostring(c), i, k, k)
        end
        list[i] = math.tointeger(c)
    end
    return list
end

local function class_score(y, class)
    if y:dim() ~= 2 then fail("score 'class' needs an output of class scores (N, K), got %s", shape_str(y)) end
    local list = classes_of(y, class)
    local n, k = y:size(1), y:size(2)
    local onehot = whorl.zeros({ n, k }, y:dtype())
    for i, c in ipairs(list) do onehot:set(i, c, 1) end
    return (y * on_device_of(y, onehot)):sum(), list
end

local function score_of(kind, y, x, opts)
    if type(kind) == "function" then
        local s = kind(y, x)
        if not whorl.is_tensor(s) or s:numel() ~= 1 then
            fail("the score function must return a scalar tensor, got %s",
                whorl.is_tensor(s) and shape_str(s) or type(s))
        end
        return s:sum()
    elseif kind == "mean" then
        return y:sum() / (y:numel() / y:size(1))
    elseif kind == "region" then
        return region_score(y, opts.region)
    elseif kind == "mask" then
        return mask_score(y, opts.mask)
    elseif kind == "class" then
        return class_score(y, opts.class)
    end
    fail("unknown score %s (expected mean, region, mask, class or a function)", tostring(kind))
end

local function default_score(y, opts)
    if opts.class ~= nil then return "class" end
    if opts.mask ~= nil then return "mask" end
    if opts.region ~= nil then return "region" end
    if whorl.is_tensor(y) and y:dim() == 2 then return "class" end
    return "mean"
end

-- ---- the forward, with the activations captured ------------------------------------------

-- Runs model(x) in eval mode with hooks on `layers`; returns the output and
-- {{module, activation}} in the order the layers ran.  Modes and hooks are
-- restored even when the forward fails.
local function forward_capturing(model, x, layers)
    local modes = {}
    for _, m in ipairs(model:modules()) do modes[m] = m.training end
    local captured, handles = {}, {}
    for _, layer in ipairs(layers) do
        handles[#handles + 1] = layer:register_forward_hook(function(m, out)
            captured[#captured + 1] = { m, out }
        end)
    end
    model:eval()
    local ok, y = pcall(whorl.enable_grad, function() return (model(x)) end)
    for _, h in ipairs(handles) do h.remove() end
    for m, mode in pairs(modes) do rawset(m, "training", mode) end
    if not ok then error(y, 0) end
    return y, captured
end

-- The default layer: the last conv that ran whose output is spatial (more
-- than one pixel), has more than one channel (with one, Grad-CAM gives back
-- the activation itself: a head, such as the masked model's mask and
-- content convolutions) and is not the model's output.
local function pick_default(captured, y)
    for i = #captured, 1, -1 do
        local m, a = captured[i][1], captured[i][2]
        if whorl.is_tensor(a) and a:dim() == 4 and a:size(2) > 1 and a:size(3) * a:size(4) > 1
            and a ~= y then
            return m, a
        end
    end
    return nil
end

local function normalise(cam)
    -- cam (N, H, W) >= 0: each image divided by its maximum (all-zero maps stay zero)
    local n = cam:size(1)
    local peak = cam:view(n, -1):max(2, true):view(n, 1, 1)
    return cam / whorl.maximum(peak, 1e-12)
end

function gradcam.compute(model, input, opts)
    if not nn.is_module(model) then fail("expected a whorl.nn model, got %s", type(model)) end
    opts = check_opts(opts)
    local x = batch_of(input)
    local layers, chosen
    if opts.layer ~= nil then
        chosen = find_layer(model, opts.layer)
        layers = { chosen }
    else
        layers = {}
        for _, e in ipairs(model:named_modules()) do
            if CONV_TYPES[e[2]._type] then layers[#layers + 1] = e[2] end
        end
        if #layers == 0 then fail("%s has no conv layer (Conv2d, ConvTranspose2d)", label(model)) end
    end
    -- A leaf copy of the input that requires grad, so the activation does
    -- even for a frozen model; the caller's tensor is untouched.
    -- In the dtype and on the device of the model's weights.
    local weight = model:parameters()[1]
    x = x:detach()
    if weight and x:dtype() ~= weight:dtype() then x = x:to(weight:dtype()) end
    if weight then x = on_device_of(weight, x) end
    x = x:clone()
    x.requires_grad = true
    local y, captured = forward_capturing(model, x, layers)
    if not whorl.is_tensor(y) then fail("the model's output is a %s, not a tensor", type(y)) end
    local activation
    if chosen then
        for _, c in ipairs(captured) do if c[1] == chosen then activation = c[2] end end
        if not activation then fail("layer '%s' did not run in the model's forward", chosen.name) end
    else
        chosen, activation = pick_default(captured, y)
        if not chosen then
            fail("no conv layer of %s gives a spatial, multi-channel output other than the model's output; " ..
                "choose one with layer = (conv layers: %s)", label(model),
                table.concat(gradcam.conv_layers(model), ", "))
        end
    end
    if activation:dim() ~= 4 then
        fail("layer '%s' gave %s, not an (N, C, h, w) activation", chosen.name, shape_str(activation))
    end
    local kind = opts.score or default_score(y, opts)
    -- Under grad mode even when the caller runs in whorl.no_grad.
    local score, classes = whorl.enable_grad(score_of, kind, y, x, opts)
    if not score.requires_grad then
        fail("the score does not depend on the model's output (it records no gradient)")
    end
    local grad = whorl.grad({ score }, { activation })[1]
    local n, H, W = x:size(1), x:size(3), x:size(4)
    local heat = whorl.no_grad(function()
        local a = activation:detach()
        local alpha = grad:mean({ 3, 4 }, true)                   -- (N, C, 1, 1)
        local cam = whorl.relu((alpha * a):sum(2, true))          -- (N, 1, h, w)
        cam = whorl.upsample(cam, { size = { H, W }, mode = "bilinear" })
        cam = normalise(whorl.relu(cam):view(n, H, W)):float()
        return cam.device == "cpu" and cam or cam:to("cpu")
    end)
    return heat, {
        layer = chosen.name, score = type(kind) == "function" and "function" or kind,
        classes = classes, activation = { activation:size(2), activation:size(3), activation:size(4) },
    }
end

-- ---- figures -------------------------------------------------------------------------------

local function as_2d(t, what)
    if not whorl.is_tensor(t) then fail("%s must be a tensor, got %s", what, type(t)) end
    if t:dim() == 4 and t:size(1) == 1 and t:size(2) == 1 then t = t[1][1]
    elseif t:dim() == 3 and t:size(1) == 1 then t = t[1] end
    if t:dim() ~= 2 then fail("%s must be (H, W), got %s", what, shape_str(t)) end
    return t:float()
end

-- figure{path, image = (H, W), heat = (H, W) in [0, 1], title = nil, alpha = 0.5,
-- size = 256}: the input, the heat in jet with a colour bar, and the overlay,
-- as one PNG (whorl.plot.heatmap_figure).
function gradcam.figure(opts)
    if type(opts) ~= "table" or type(opts.path) ~= "string" then
        fail("figure: expected {path = 'file.png', image = (H, W), heat = (H, W)}")
    end
    local image, heat = as_2d(opts.image, "image"), as_2d(opts.heat, "heat")
    if image:size(1) ~= heat:size(1) or image:size(2) ~= heat:size(2) then
        fail("figure: image %s and heat %s differ in size", shape_str(image), shape_str(heat))
    end
    require("whorl.plot").heatmap_figure{ path = opts.path, image = image:clamp(0, 1),
        heat = heat:clamp(0, 1), title = opts.title, alpha = opts.alpha, size = opts.size }
end

-- overlay(image (H, W), heat (H, W), alpha = 0.5) -> (3, H, W) RGB in [0, 1]:
-- the heat in jet blended over the grey image, for grids of many prints
-- (whorl.plot.image_grid).
function gradcam.overlay(image, heat, alpha)
    image, heat = as_2d(image, "image"), as_2d(heat, "heat")
    alpha = alpha or 0.5
    if type(alpha) ~= "number" or alpha < 0 or alpha > 1 then
        fail("overlay: alpha must be a number in [0, 1], got %s", tostring(alpha))
    end
    if image:size(1) ~= heat:size(1) or image:size(2) ~= heat:size(2) then
        fail("overlay: image %s and heat %s differ in size", shape_str(image), shape_str(heat))
    end
    local jet = require("whorl.plot").colormap(heat:clamp(0, 1), "jet")
    local grey = image:clamp(0, 1):unsqueeze(1):expand(3, image:size(1), image:size(2))
    return grey * (1 - alpha) + jet * alpha
end

return gradcam
