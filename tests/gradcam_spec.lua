-- whorl.gradcam: a toy whose heat map is known exactly, the formula checked
-- against a hand computation for every score kind, layer selection and its
-- errors, no side effects on .grad, modes or the input, and the figure.
local whorl = require "whorl"
local nn = require "whorl.nn"
local gradcam = require "whorl.gradcam"
local autoencoder100 = require "autoencoder100"
local classifier = require "classifier"
local check = require "helpers.check"
local max_diff, raises = check.max_diff, check.raises

local function min_of(t) return -((-t):max():item()) end

-- A two-class toy: channel 1 of "detect" is relu(x), channel 2 relu(-x);
-- logit k is the mean of channel k.  The evidence for class 1 is where the
-- input is positive, for class 2 where it is negative.
local function toy(pool)
    local layers = {}
    if pool then layers[#layers + 1] = nn.MaxPool2d(2) end
    layers[#layers + 1] = nn.Conv2d(1, 2, 1, { bias = false, activation = "relu", name = "detect" })
    layers[#layers + 1] = nn.GlobalAvgPool2d()
    layers[#layers + 1] = nn.Linear(2, 2, { bias = false, name = "logits" })
    local m = nn.Sequential(layers)
    whorl.no_grad(function()
        m:get("detect").weight:copy_(whorl.tensor({ 1, -1 }):view(2, 1, 1, 1))
        m:get("logits").weight:copy_(whorl.tensor({ { 1, 0 }, { 0, 1 } }))
    end)
    return m
end

-- 16x16: +1 in rows/cols 3..8 (region P), -1 in rows/cols 11..14 (region Q), 0 elsewhere.
local function two_patches()
    local x = whorl.zeros({ 1, 1, 16, 16 })
    x[1][1]:narrow(1, 3, 6):narrow(2, 3, 6):fill_(1)
    x[1][1]:narrow(1, 11, 4):narrow(2, 11, 4):fill_(-1)
    return x
end

local function region_mask(r0, c0, h, w)
    local m = whorl.zeros({ 16, 16 })
    m:narrow(1, r0, h):narrow(2, c0, w):fill_(1)
    return m
end

describe("gradcam.compute on a toy with a known answer", function()
    before_each(function() nn.clear_session() end)

    it("lights the positive patch for class 1 and the negative one for class 2, zero elsewhere", function()
        local m, x = toy(), two_patches()
        local P, Q = region_mask(3, 3, 6, 6), region_mask(11, 11, 4, 4)
        local h1, info1 = gradcam.compute(m, x, { layer = "detect", class = 1 })
        assert.are.same({ 1, 16, 16 }, h1:size())
        assert.are.equal("detect", info1.layer)
        assert.are.equal("class", info1.score)
        assert.are.same({ 1 }, info1.classes)
        -- full resolution: no upsampling blur, the map is exactly P
        assert.is_true(max_diff(h1[1], P) < 1e-6)
        local h2 = gradcam.compute(m, x, { layer = "detect", class = 2 })
        assert.is_true(max_diff(h2[1], Q) < 1e-6)
    end)

    it("uses the predicted class by default for (N, K) outputs, per image", function()
        local m = toy()
        local x = whorl.cat({ two_patches(), -two_patches() }, 1) -- image 2: patches swapped
        -- image 1: P holds 36 positive pixels against Q's 16 negative: class 1
        local heat, info = gradcam.compute(m, x, { layer = "detect" })
        assert.are.same({ 1, 2 }, info.classes)
        assert.is_true(max_diff(heat[1], region_mask(3, 3, 6, 6)) < 1e-6)
        assert.is_true(max_diff(heat[2], region_mask(3, 3, 6, 6)) < 1e-6) -- class 2 of -x: P again
        local per_image = gradcam.compute(m, x, { layer = "detect", class = { 2, 2 } })
        assert.is_true(max_diff(per_image[1], region_mask(11, 11, 4, 4)) < 1e-6)
    end)

    it("upsamples a pooled layer's map bilinearly to the input size", function()
        local m, x = toy(true), two_patches()
        local heat = gradcam.compute(m, x, { layer = "detect", class = 1 })
        assert.are.same({ 1, 16, 16 }, heat:size())
        local h = heat[1]
        assert.are.equal(1, h:max():item())
        assert.is_true(min_of(h) >= 0)
        -- the centre of P is hot; Q and the blank corners are cold
        assert.is_true(h:narrow(1, 4, 4):narrow(2, 4, 4):mean():item() > 0.9)
        assert.is_true(h:narrow(1, 11, 6):narrow(2, 11, 6):max():item() < 1e-6)
        assert.is_true(h:narrow(1, 13, 4):narrow(2, 1, 4):max():item() < 1e-6)
    end)

    it("is all zero where the score has no positive evidence", function()
        local m = toy()
        local heat = gradcam.compute(m, whorl.zeros({ 1, 1, 16, 16 }), { layer = "detect", class = 1 })
        assert.are.equal(0, heat:abs():max():item())
    end)
end)

-- The same computation written out by hand (Selvaraju et al., eq. 1-2).
local function by_hand(model, x, layer_name, score_fn)
    model:eval()
    local layer = model:get(layer_name)
    layer.retain_output = true
    local y = model(x)
    layer.retain_output = nil
    local a = layer.output
    local g = whorl.grad({ score_fn(y) }, { a })[1]
    local cam = whorl.relu((g:mean({ 3, 4 }, true) * a):sum(2, true))
    cam = whorl.upsample(cam, { size = { x:size(3), x:size(4) }, mode = "bilinear" })
    local n = x:size(1)
    cam = cam:view(n, x:size(3), x:size(4)):detach()
    return cam / cam:view(n, -1):max(2, true):view(n, 1, 1)
end

describe("gradcam.compute on an autoencoder", function()
    local model, x
    before_each(function()
        nn.clear_session()
        model = autoencoder100{ input_size = 16, filters = { 4, 8 }, seed = 3 }
        whorl.manual_seed(5)
        x = whorl.rand({ 2, 1, 16, 16 })
    end)

    it("lists conv layers and defaults to the last one before the output", function()
        local names = gradcam.conv_layers(model)
        assert.are.same({ "conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4" }, names)
        local heat, info = gradcam.compute(model, x)
        assert.are.equal("conv2d_3", info.layer) -- conv2d_4 makes the output itself
        assert.are.equal("mean", info.score)
        assert.are.same({ 4, 8, 8 }, info.activation)
        assert.are.same({ 2, 16, 16 }, heat:size())
    end)

    it("skips one-channel heads and the output layer by default", function()
        local Toy = nn.Module:extend("GradcamHeadToy")
        function Toy:__init()
            self.body = nn.Conv2d(1, 3, 3, { padding = "same", name = "body" })
            self.head = nn.Conv2d(3, 1, 1, { name = "head" })
        end
        function Toy:forward(t) return self.head(self.body(t)) * 2 end
        local _, info = gradcam.compute(Toy(), x)
        assert.are.equal("body", info.layer)
        local only_output = nn.Sequential{ nn.Conv2d(1, 1, 3, { padding = "same" }) }
        raises(function() gradcam.compute(only_output, x) end, "no conv layer of",
            "choose one with layer = (conv layers: conv2d_")
        -- named explicitly, the output layer itself is allowed
        local heat = gradcam.compute(only_output, x, { layer = only_output:get(1).name })
        assert.are.same({ 2, 16, 16 }, heat:size())
    end)

    it("matches a hand computation for the mean, region, mask and function scores", function()
        local mask = region_mask(2, 5, 7, 9)
        local cases = {
            { { score = "mean" }, function(y) return y:sum() / (y:numel() / 2) end },
            { { score = "region", region = { 5, 2, 9, 7 } }, function(y)
                return y:narrow(3, 2, 7):narrow(4, 5, 9):sum() / 63 end },
            { { mask = mask }, function(y) return (y * mask):sum() / 63 end },
            { { score = function(y) return (y * y):sum() end }, function(y) return (y * y):sum() end },
        }
        for i, case in ipairs(cases) do
            for _, layer in ipairs({ "conv2d", "conv2d_2" }) do
                case[1].layer = layer
                local heat = gradcam.compute(model, x, case[1])
                local want = by_hand(model, x, layer, case[2])
                assert.is_true(max_diff(heat, want) < 1e-5, "case " .. i .. " layer " .. layer)
                assert.are.equal(1, heat[1]:max():item())
            end
        end
    end)

    it("accepts (H, W) and (C, H, W) inputs and leaves the input as it was", function()
        local before = x:clone()
        local a = gradcam.compute(model, x[1][1], { layer = "conv2d_1" })
        local b = gradcam.compute(model, x[1], { layer = "conv2d_1" })
        assert.are.same({ 1, 16, 16 }, a:size())
        assert.are.equal(0, max_diff(a, b))
        assert.are.equal(0, max_diff(x, before))
        assert.is_false(x.requires_grad)
    end)

    it("leaves parameters' .grad, modes and hooks as they were", function()
        local params = model:parameters()
        params[1].grad = whorl.full(params[1]:size(), 0.5)
        model:train()
        model:get(4).training = false -- a mixed state must come back as it was
        gradcam.compute(model, x, { layer = "conv2d_2" })
        assert.are.equal(0.5, params[1].grad:max():item())
        assert.are.equal(0.5, min_of(params[1].grad))
        for i = 2, #params do assert.is_nil(params[i].grad) end
        for i, m in ipairs(model:modules()) do
            assert.are.equal(i ~= 5, m.training, "module " .. i)
        end
        assert.is_nil(rawget(model:get("conv2d_2"), "_forward_hooks"))
    end)

    it("records its gradients even when called inside whorl.no_grad", function()
        local inside = whorl.no_grad(gradcam.compute, model, x, { layer = "conv2d_1" })
        assert.are.equal(0, max_diff(inside, gradcam.compute(model, x, { layer = "conv2d_1" })))
        assert.is_true(whorl.is_grad_enabled())
        raises(function() gradcam.compute(model, x, { score = function() return whorl.tensor(1) end }) end,
            "the score does not depend on the model's output")
    end)

    it("takes the input in the model's dtype (a float64 model, a float32 input)", function()
        local want = gradcam.compute(model, x, { layer = "conv2d_2" })
        model:to("float64")
        local heat = gradcam.compute(model, x, { layer = "conv2d_2", mask = region_mask(1, 1, 8, 8) })
        assert.are.equal("float32", heat:dtype())
        assert.are.equal("float32", x:dtype())
        local same = gradcam.compute(model, x:double(), { layer = "conv2d_2" })
        assert.is_true(max_diff(same, want) < 1e-4)
    end)

    it("works on a frozen model (the input carries the gradient)", function()
        model:freeze()
        local heat = gradcam.compute(model, x, { layer = "conv2d_1" })
        assert.are.equal(1, heat[1]:max():item())
    end)

    it("names the layer in errors and lists the conv layers", function()
        raises(function() gradcam.compute(model, x, { layer = "conv9" }) end, "no layer named 'conv9'",
            "conv2d, conv2d_1, conv2d_2, conv2d_3, conv2d_4")
        raises(function() gradcam.compute(model, x, { layer = "max_pooling2d" }) end,
            "'max_pooling2d' is a MaxPool2d, not a conv layer", "conv layers: conv2d,")
        raises(function() gradcam.compute(model, x, { layer = 3 }) end, "layer must be a layer name")
        raises(function() gradcam.compute(model, x, { score = "class" }) end,
            "score 'class' needs an output of class scores (N, K)")
        raises(function() gradcam.compute(model, x, { score = "region", region = { 10, 1, 8, 4 } }) end,
            "does not fit in the 16x16 output")
        raises(function() gradcam.compute(model, x, { mask = whorl.ones({ 8, 8 }) }) end,
            "mask [8, 8] does not fit the output [2, 1, 16, 16]")
        raises(function() gradcam.compute(model, x, { mask = whorl.zeros({ 16, 16 }) }) end, "empty")
        raises(function() gradcam.compute(model, x, { score = "max" }) end, "unknown score max")
        raises(function() gradcam.compute(model, x, { score = function() return 1 end }) end,
            "must return a scalar tensor")
        raises(function() gradcam.compute(model, x, { layers = "conv2d" }) end, "unknown option 'layers'")
        raises(function() gradcam.compute(model, whorl.rand({ 2, 2, 2, 2, 2 })) end, "input must be")
        raises(function() gradcam.compute({}, x) end, "expected a whorl.nn model")
        -- a failing forward leaves no hook behind
        raises(function() gradcam.compute(model, whorl.rand({ 1, 1, 12, 12 }), { layer = "conv2d" }) end,
            "expected input of shape")
        assert.is_nil(rawget(model:get("conv2d"), "_forward_hooks"))
    end)
end)

describe("gradcam on the fingerprint classifier", function()
    it("explains the predicted class by default", function()
        nn.clear_session()
        local model = classifier{ input_size = 32, filters = { 4, 8 }, seed = 2 }
        local images = whorl.synth.batch{ count = 3, size = 32, dpi = 250, seed = 1, info = false }
        local heat, info = gradcam.compute(model, images)
        assert.are.equal(gradcam.conv_layers(model)[2], info.layer)
        assert.are.equal("class", info.score)
        model:eval()
        assert.are.same(classifier.predict_classes(model(images)), info.classes)
        assert.are.same({ 3, 32, 32 }, heat:size())
        assert.is_true(min_of(heat) >= 0 and heat:max():item() <= 1)
        raises(function() gradcam.compute(model, images, { class = 6 }) end, "class 6 (image 1) is outside 1..5")
        raises(function() gradcam.compute(model, images, { class = { 1, "whorl", 2 } }) end,
            "class whorl (image 2) is outside 1..5")
        raises(function() gradcam.compute(model, images, { layer = "dense" }) end,
            "layer 'dense' is a Linear, not a conv layer (conv layers: conv2d, conv2d_1)")
    end)
end)

describe("gradcam.figure and gradcam.overlay", function()
    it("writes whorl.plot's three-panel PNG of the image and its heat", function()
        local path = os.tmpname() .. ".png"
        local img = whorl.rand({ 24, 20 })
        gradcam.figure{ path = path, image = img, heat = img, title = "test", size = 64 }
        local info = whorl.image.info(path)
        assert.are.equal(3, info.channels)
        assert.is_true(info.width > 3 * 64 and info.height > 64)
        os.remove(path)
        raises(function() gradcam.figure{ path = path, image = img, heat = whorl.rand({ 4, 4 }) } end,
            "differ in size")
        raises(function() gradcam.figure{ image = img, heat = img } end, "expected {path")
    end)

    it("blends the heat in jet over the grey image", function()
        local img = whorl.full({ 6, 5 }, 0.5)
        local heat = whorl.zeros({ 6, 5 })
        heat:set(2, 3, 1)
        local o = gradcam.overlay(img, heat, 0.25)
        assert.are.same({ 3, 6, 5 }, o:size())
        local jet = require("whorl.plot").colormap(heat, "jet")
        assert.is_true(max_diff(o, img:unsqueeze(1) * 0.75 + jet * 0.25) < 1e-6)
        assert.are.equal(0, max_diff(gradcam.overlay(img, heat, 0), img:unsqueeze(1):expand(3, 6, 5)))
        raises(function() gradcam.overlay(img, heat, 2) end, "alpha must be a number in [0, 1]")
        raises(function() gradcam.overlay(img, whorl.zeros({ 5, 5 })) end, "differ in size")
    end)
end)

describe("experiments/gradcam.lua", function()
    local dir
    setup(function()
        local p = io.popen("mktemp -d")
        dir = p:read("l")
        p:close()
    end)
    teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

    local function run(flags)
        local p = io.popen("lua5.4 experiments/gradcam.lua " .. flags .. " 2>&1")
        local out = p:read("a")
        local ok = p:close()
        return ok, out
    end

    it("explains a saved classifier's classes, lists its layers and names a wrong one", function()
        nn.clear_session()
        local model = classifier{ input_size = 32, filters = { 4, 8 }, seed = 2 }
        whorl.save(model, dir .. "/model.safetensors")
        local ok, out = run(("--model %s/model.safetensors --count 2 --dpi 250 --out %s/a"):format(dir, dir))
        assert.is_true(ok, out)
        assert.matches("Layer conv2d_1 (activation 8x16x16), score class", out, 1, true)
        assert.is_true(whorl.image.info(dir .. "/a/gradcam.png").width > 0)
        assert.is_true(whorl.image.info(dir .. "/a/gradcam_grid.png").width > 0)
        ok, out = run(("--model %s/model.safetensors --list-layers"):format(dir))
        assert.is_true(ok, out)
        assert.matches("conv2d_1%s+Conv2d%s+%(N, 8, 16, 16%)", out)
        ok, out = run(("--model %s/model.safetensors --layer dense --out %s/b"):format(dir, dir))
        assert.is_falsy(ok)
        assert.matches("layer 'dense' is a Linear, not a conv layer", out, 1, true)
        ok, out = run(("--model %s/missing.safetensors"):format(dir))
        assert.is_falsy(ok)
        assert.matches("not found", out, 1, true)
    end)

    it("trains a tiny restorer when no model is given and explains the damage mask", function()
        local ok, out = run(("--size 32 --count 2 --score mask --out %s/c"):format(dir))
        assert.is_true(ok, out)
        assert.matches("score mask", out, 1, true)
        assert.is_true(whorl.image.info(dir .. "/c/gradcam.png").width > 0)
    end)
end)
