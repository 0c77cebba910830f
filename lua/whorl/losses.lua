-- Losses as callable objects: loss(pred, target [, weight]) -> a scalar
-- tensor.  weight, optional, is a per-pixel map broadcastable to pred (a
-- mask of the damaged region, say); the mean is sum(weight * loss) / count,
-- Keras' sample-weight convention, so an all-ones map changes nothing.
--
--   losses.MSE()  losses.L1()  losses.BCE()   (Keras' binary cross-entropy:
--       pred clipped to [1e-7, 1 - 1e-7])     {reduction = "mean"|"sum"|"none"}
--   losses.SSIM{window = 11, sigma = 1.5, data_range = 1, k1 = 0.01, k2 = 0.03}
--       1 - SSIM: Gaussian-weighted local statistics over "valid" windows,
--       as tf.image.ssim; differentiable (two 1-d convolutions of the
--       Gaussian over core ops).
--   0.84 * losses.L1() + 0.16 * losses.SSIM()   weighted sums (losses.Sum)
--   losses.Ridge{period = 9, orientations = 8, sigma = 0.45 * period}
--       mean absolute difference of oriented ridge-filter (even Gabor)
--       responses at the ridge period (9 px at 500 dpi): ridges as a
--       minutiae extractor sees them; losses.ridge_responses(x, opts).
--   losses.CrossEntropy{class_weights = nil, reduction = "mean"}
--       softmax cross-entropy of logits (N, K) against class ids (N),
--       1-based, in any dtype (whorl.cross_entropy; Keras'
--       sparse_categorical_crossentropy with from_logits = True).
--       class_weights: a list of K numbers (PyTorch's weight: the mean
--       divides by the summed weights).  A third argument is a per-sample
--       weight (N).
--   losses.get("mse")   Keras' names: mse/mean_squared_error, mae/l1/
--                       mean_absolute_error, binary_crossentropy/bce, ssim,
--                       cross_entropy/sparse_categorical_crossentropy/ce
--   losses.ssim(x, y, opts) -> mean SSIM (a metric), losses.ssim_map(...)
-- Each loss has config() (plain data) and losses.from_config(cfg).
local whorl = require "whorl"

local losses = {}

local Loss = {}
Loss.__index = Loss

local function is_loss(v)
    return type(v) == "table" and getmetatable(v) and getmetatable(v).__is_loss == true
end
losses.is_loss = is_loss

local classes = {}

local function define(name)
    local cls = setmetatable({}, { __index = Loss })
    for k, v in pairs(Loss) do if k:sub(1, 2) == "__" then cls[k] = v end end
    cls.__index = cls
    cls.__is_loss = true
    cls.type = name
    classes[name] = cls
    return cls
end

function Loss:__call(pred, target, weight)
    if not whorl.is_tensor(pred) or not whorl.is_tensor(target) then
        error(string.format("%s loss: pred and target must be tensors, got %s and %s", self.type,
            type(pred), type(target)), 2)
    end
    if weight ~= nil and not whorl.is_tensor(weight) then
        error(string.format("%s loss: weight must be a tensor (a per-pixel map), got %s",
            self.type, type(weight)), 2)
    end
    return self:forward(pred, target, weight)
end

function Loss:__tostring() return "losses." .. self.type end

local function check_options(name, opts, allowed)
    opts = opts or {}
    if type(opts) ~= "table" then error(name .. ": options must be a table", 3) end
    for k in pairs(opts) do
        local ok = false
        for _, a in ipairs(allowed) do ok = ok or a == k end
        if not ok then
            error(string.format("%s: unknown option '%s' (expected %s)", name, tostring(k),
                table.concat(allowed, ", ")), 3)
        end
    end
    return opts
end

-- ---- pixel losses over the core ops ---------------------------------------------------

local function pixel_loss(name, op)
    local cls = define(name)
    function cls.new(opts)
        opts = check_options(name, opts, { "reduction" })
        local r = opts.reduction or "mean"
        if r ~= "mean" and r ~= "sum" and r ~= "none" then
            error(string.format("%s: reduction must be mean, sum or none, got %s", name,
                tostring(r)), 2)
        end
        return setmetatable({ reduction = r, _opts = { reduction = r } }, cls)
    end
    function cls:forward(pred, target, weight)
        local o = self._opts
        o.weight = weight
        local ok, out = pcall(op, pred, target, o)
        o.weight = nil
        if not ok then error(out, 0) end
        return out
    end
    function cls:config() return { type = name, reduction = self.reduction } end
    setmetatable(cls, { __index = Loss, __call = function(_, opts) return cls.new(opts) end })
    return cls
end

losses.MSE = pixel_loss("MSE", whorl.mse_loss)
losses.L1 = pixel_loss("L1", whorl.l1_loss)
losses.BCE = pixel_loss("BCE", whorl.bce_loss)

-- ---- SSIM ---------------------------------------------------------------------------------

local SSIM_DEFAULTS = { window = 11, sigma = 1.5, data_range = 1, k1 = 0.01, k2 = 0.03 }

local function ssim_settings(opts, where)
    opts = check_options(where, opts, { "window", "sigma", "data_range", "k1", "k2" })
    local s = {}
    for k, v in pairs(SSIM_DEFAULTS) do s[k] = opts[k] == nil and v or opts[k] end
    s.window = math.tointeger(s.window) -- configs read back from JSON hold 11.0
    if not s.window or s.window < 1 or s.window % 2 == 0 then
        error(where .. ": window must be an odd positive integer", 3)
    end
    for _, k in ipairs({ "sigma", "data_range", "k1", "k2" }) do
        if type(s[k]) ~= "number" or s[k] <= 0 then
            error(string.format("%s: %s must be a positive number", where, k), 3)
        end
    end
    return s
end

-- The separable Gaussian as a (1,1,1,w) row and a (1,1,w,1) column filter,
-- cached per settings and dtype.
local kernel_cache = setmetatable({}, { __mode = "v" })
local function gaussian_kernels(s, dtype)
    local key = string.format("%d/%.17g/%s", s.window, s.sigma, dtype)
    local k = kernel_cache[key]
    if k then return k[1], k[2] end
    local g, sum = {}, 0
    for i = 1, s.window do
        local x = i - 1 - (s.window - 1) / 2
        g[i] = math.exp(-x * x / (2 * s.sigma * s.sigma))
        sum = sum + g[i]
    end
    for i = 1, s.window do g[i] = g[i] / sum end
    local row = whorl.tensor(g, "float64"):to(dtype):view(1, 1, 1, s.window)
    local col = row:view(1, 1, s.window, 1)
    kernel_cache[key] = { row, col }
    return row, col
end

local function blur(t, row, col)
    return whorl.conv2d(whorl.conv2d(t, row, nil), col, nil)
end

local function check_images(x, y, s, where)
    if not whorl.is_tensor(x) or not whorl.is_tensor(y) then
        error(where .. ": expected two tensors", 3)
    end
    local a, b = x:size(), y:size()
    local same = #a == #b
    for d = 1, #a do same = same and a[d] == b[d] end
    if #a ~= 4 or not same then
        error(string.format("%s: expected two (N, C, H, W) tensors of one shape, got [%s] and [%s]",
            where, table.concat(a, ", "), table.concat(b, ", ")), 3)
    end
    if a[3] < s.window or a[4] < s.window then
        error(string.format("%s: images must be at least %dx%d (the window), got %dx%d", where,
            s.window, s.window, a[3], a[4]), 3)
    end
    return a
end

-- SSIM per window position: (N*C, 1, H - w + 1, W - w + 1).
local function ssim_map(x, y, s)
    local n, c, h, w = table.unpack(x:size())
    local m = n * c
    local xs, ys = x:reshape(m, 1, h, w), y:reshape(m, 1, h, w)
    local row, col = gaussian_kernels(s, x:dtype())
    local f = blur(whorl.cat({ xs, ys, xs * xs, ys * ys, xs * ys }, 1), row, col)
    local mu_x, mu_y = f:narrow(1, 1, m), f:narrow(1, m + 1, m)
    local mx2, my2, mxy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    local var_x = f:narrow(1, 2 * m + 1, m) - mx2
    local var_y = f:narrow(1, 3 * m + 1, m) - my2
    local cov = f:narrow(1, 4 * m + 1, m) - mxy
    local c1, c2 = (s.k1 * s.data_range) ^ 2, (s.k2 * s.data_range) ^ 2
    return ((mxy * 2 + c1) * (cov * 2 + c2)) / ((mx2 + my2 + c1) * (var_x + var_y + c2))
end

function losses.ssim_map(x, y, opts)
    local s = ssim_settings(opts, "ssim_map")
    check_images(x, y, s, "ssim_map")
    return ssim_map(x, y, s)
end

-- The mean SSIM of two batches (1 for identical images).
function losses.ssim(x, y, opts)
    local s = ssim_settings(opts, "ssim")
    check_images(x, y, s, "ssim")
    return ssim_map(x, y, s):mean()
end

local SSIM = define("SSIM")
losses.SSIM = SSIM

function SSIM.new(opts)
    return setmetatable({ settings = ssim_settings(opts, "SSIM") }, SSIM)
end

-- 1 - SSIM per window, weighted by the weight map blurred with the same
-- Gaussian (the weight a window's pixels carry), averaged over windows.
function SSIM:forward(pred, target, weight)
    local s = self.settings
    local size = check_images(pred, target, s, "SSIM loss")
    local map = ssim_map(pred, target, s)
    if weight == nil then return 1 - map:mean() end
    local wm = weight:expand(size):reshape(size[1] * size[2], 1, size[3], size[4])
    local row, col = gaussian_kernels(s, pred:dtype())
    wm = blur(wm:to(pred:dtype()), row, col)
    return ((1 - map) * wm):mean()
end

function SSIM:config()
    local c = { type = "SSIM" }
    for k, v in pairs(self.settings) do c[k] = v end
    return c
end

setmetatable(SSIM, { __index = Loss, __call = function(_, opts) return SSIM.new(opts) end })

-- ---- Ridge: L1 between oriented ridge-filter responses -----------------------------------

-- A fingerprint matcher reads ridges through oriented band-pass filters
-- (Hong, Wan and Jain 1998, Gabor filters at the ridge frequency) and then
-- their skeleton: a shifted or broken ridge moves minutiae, while an error
-- in grey level does not.  This loss compares the images as such a matcher
-- sees them: even Gabor responses at `orientations` angles and the ridge
-- period, over "valid" positions, mean absolute difference.
local RIDGE_DEFAULTS = { period = 9, orientations = 8 }

local function ridge_settings(opts)
    opts = check_options("Ridge", opts, { "period", "orientations", "sigma" })
    local r = { period = opts.period or RIDGE_DEFAULTS.period,
        orientations = opts.orientations or RIDGE_DEFAULTS.orientations }
    if type(r.period) ~= "number" or not (r.period >= 2 and r.period <= 64) then
        error("Ridge: period must be a number of pixels in [2, 64], got " .. tostring(r.period), 3)
    end
    if math.type(r.orientations) ~= "integer" or r.orientations < 1 or r.orientations > 32 then
        error("Ridge: orientations must be an integer in [1, 32], got " .. tostring(r.orientations), 3)
    end
    -- about half a period: the filter spans two ridges on each side
    r.sigma = opts.sigma or 0.45 * r.period
    if type(r.sigma) ~= "number" or not (r.sigma > 0) then
        error("Ridge: sigma must be a positive number, got " .. tostring(r.sigma), 3)
    end
    r.window = 2 * math.ceil(2.5 * r.sigma) + 1
    return r
end

-- (orientations, 1, window, window): each filter has zero mean (a flat
-- region gives 0) and answers 1 to a unit cosine grating across its angle.
local ridge_cache = setmetatable({}, { __mode = "v" })
local function ridge_filters(r, dtype)
    local key = string.format("%.17g/%d/%.17g/%s", r.period, r.orientations, r.sigma, dtype)
    if ridge_cache[key] then return ridge_cache[key] end
    local w, half, values = r.window, (r.window - 1) / 2, {}
    for k = 0, r.orientations - 1 do
        local theta = math.pi * k / r.orientations
        local c, s = math.cos(theta), math.sin(theta)
        local g, sum, count = {}, 0, w * w
        for y = 0, w - 1 do
            for x = 0, w - 1 do
                local dx, dy = x - half, y - half
                local u = dx * c + dy * s
                local v = math.exp(-(dx * dx + dy * dy) / (2 * r.sigma * r.sigma)) *
                    math.cos(2 * math.pi * u / r.period)
                g[#g + 1] = v
                sum = sum + v
            end
        end
        local mean, gain = sum / count, 0
        for i = 1, count do
            g[i] = g[i] - mean
            local dx, dy = (i - 1) % w - half, (i - 1) // w - half
            gain = gain + g[i] * math.cos(2 * math.pi * (dx * c + dy * s) / r.period)
        end
        for i = 1, count do values[#values + 1] = g[i] / gain end
    end
    local t = whorl.tensor(values, "float64"):to(dtype):view(r.orientations, 1, w, w)
    ridge_cache[key] = t
    return t
end

local Ridge = define("Ridge")
losses.Ridge = Ridge

function Ridge.new(opts)
    return setmetatable({ settings = ridge_settings(opts) }, Ridge)
end

-- The filter responses of checked (N, C, H, W) images of `size`:
-- (N*C, orientations, H-w+1, W-w+1).
local function ridge_conv(x, size, r)
    return whorl.conv2d(x:reshape(size[1] * size[2], 1, size[3], size[4]), ridge_filters(r, x:dtype()), nil)
end

function losses.ridge_responses(x, opts)
    local r = ridge_settings(opts)
    return ridge_conv(x, check_images(x, x, r, "ridge_responses"), r)
end

function Ridge:forward(pred, target, weight)
    local r = self.settings
    local size = check_images(pred, target, r, "Ridge loss")
    local diff = (ridge_conv(pred, size, r) - ridge_conv(target, size, r)):abs()
    if weight == nil then return diff:mean() end
    -- a position counts with the weight of its window's centre pixel
    local half = (r.window - 1) // 2
    local wm = weight:expand(size):reshape(size[1] * size[2], 1, size[3], size[4]):to(pred:dtype())
    wm = wm:narrow(3, half + 1, size[3] - 2 * half):narrow(4, half + 1, size[4] - 2 * half)
    return (diff * wm):mean()
end

function Ridge:config()
    return { type = "Ridge", period = self.settings.period, orientations = self.settings.orientations,
        sigma = self.settings.sigma }
end

setmetatable(Ridge, { __index = Loss, __call = function(_, opts) return Ridge.new(opts) end })

-- ---- cross-entropy of class logits ---------------------------------------------------------

local CrossEntropy = define("CrossEntropy")
losses.CrossEntropy = CrossEntropy

function CrossEntropy.new(opts)
    opts = check_options("CrossEntropy", opts, { "class_weights", "reduction" })
    local r = opts.reduction or "mean"
    if r ~= "mean" and r ~= "sum" and r ~= "none" then
        error("CrossEntropy: reduction must be mean, sum or none, got " .. tostring(r), 2)
    end
    local cw = opts.class_weights
    if cw ~= nil then
        if type(cw) ~= "table" or #cw == 0 then
            error("CrossEntropy: class_weights must be a list of numbers, one per class", 2)
        end
        for i, v in ipairs(cw) do
            if type(v) ~= "number" or v < 0 then
                error(string.format("CrossEntropy: class_weights[%d] must be a number >= 0, got %s",
                    i, tostring(v)), 2)
            end
        end
        cw = { table.unpack(cw) }
    end
    return setmetatable({ reduction = r, class_weights = cw }, CrossEntropy)
end

-- Class ids outside 1..K are an error naming the id (the C op checks too;
-- this names the loss and the sample).
local function check_class_ids(logits, target)
    if logits:dim() ~= 2 then
        error(string.format("CrossEntropy: logits must be (N, K), got [%s]",
            table.concat(logits:size(), ", ")), 0)
    end
    if target:dim() ~= 1 or target:size(1) ~= logits:size(1) then
        error(string.format("CrossEntropy: target must hold one class id per sample (%d), got [%s]",
            logits:size(1), table.concat(target:size(), ", ")), 0)
    end
    local k = logits:size(2)
    for i, c in ipairs(target:totable()) do
        if c ~= math.floor(c) or c < 1 or c > k then
            error(string.format("CrossEntropy: sample %d has class id %g, outside 1..%d", i, c, k), 0)
        end
    end
end

function CrossEntropy:forward(logits, target, weight)
    check_class_ids(logits, target)
    local cw = self.class_weights
    if cw and #cw ~= logits:size(2) then
        error(string.format("CrossEntropy: %d class_weights for %d classes", #cw, logits:size(2)), 0)
    end
    local o = { reduction = weight and "none" or self.reduction }
    if cw then o.weight = whorl.tensor(cw, logits:dtype()) end
    local out = whorl.cross_entropy(logits, target, o)
    if weight == nil then return out end
    out = out * weight:reshape(-1):to(logits:dtype())
    if self.reduction == "mean" then return out:mean() end
    if self.reduction == "sum" then return out:sum() end
    return out
end

function CrossEntropy:config()
    return { type = "CrossEntropy", reduction = self.reduction,
        class_weights = self.class_weights and { table.unpack(self.class_weights) } }
end

setmetatable(CrossEntropy, { __index = Loss, __call = function(_, opts) return CrossEntropy.new(opts) end })

-- ---- weighted sums ---------------------------------------------------------------------------

local Sum = define("Sum")
losses.Sum = Sum

-- losses.Sum{{0.84, losses.L1()}, {0.16, losses.SSIM()}}
function Sum.new(terms)
    if type(terms) ~= "table" or #terms == 0 then
        error("Sum: expected a list of {coefficient, loss} pairs", 2)
    end
    local list = {}
    for i, t in ipairs(terms) do
        if type(t) ~= "table" or type(t[1]) ~= "number" or not is_loss(t[2]) then
            error(string.format("Sum: term %d must be {number, loss}", i), 2)
        end
        list[i] = { t[1], t[2] }
    end
    return setmetatable({ terms = list }, Sum)
end

function Sum:forward(pred, target, weight)
    local total
    for _, t in ipairs(self.terms) do
        local v = t[2]:forward(pred, target, weight)
        if t[1] ~= 1 then v = v * t[1] end
        total = total and total + v or v
    end
    return total
end

function Sum:config()
    local terms = {}
    for i, t in ipairs(self.terms) do terms[i] = { weight = t[1], loss = t[2]:config() } end
    return { type = "Sum", terms = terms }
end

setmetatable(Sum, { __index = Loss, __call = function(_, terms) return Sum.new(terms) end })

-- Arithmetic on losses builds Sums: 0.84 * l1 + 0.16 * ssim.
local function as_terms(v)
    if getmetatable(v) == Sum then return v.terms end
    return { { 1, v } }
end

local function mul(a, b)
    if type(a) == "number" and is_loss(b) then a, b = b, a end
    if not (is_loss(a) and type(b) == "number") then
        error("losses: a loss can be multiplied by a number only", 2)
    end
    local terms = {}
    for i, t in ipairs(as_terms(a)) do terms[i] = { t[1] * b, t[2] } end
    return Sum.new(terms)
end

local function add(a, b)
    if not (is_loss(a) and is_loss(b)) then error("losses: only losses can be added", 2) end
    local terms = {}
    for _, t in ipairs(as_terms(a)) do terms[#terms + 1] = { t[1], t[2] } end
    for _, t in ipairs(as_terms(b)) do terms[#terms + 1] = { t[1], t[2] } end
    return Sum.new(terms)
end

for _, cls in pairs(classes) do
    cls.__mul, cls.__add = mul, add
end

-- ---- names and configs -------------------------------------------------------------------------

local ALIASES = {
    mse = "MSE", mean_squared_error = "MSE", MSE = "MSE",
    mae = "L1", l1 = "L1", mean_absolute_error = "L1", L1 = "L1",
    bce = "BCE", binary_crossentropy = "BCE", BCE = "BCE",
    ssim = "SSIM", SSIM = "SSIM",
    cross_entropy = "CrossEntropy", ce = "CrossEntropy", CrossEntropy = "CrossEntropy",
    sparse_categorical_crossentropy = "CrossEntropy",
}

function losses.get(name, opts)
    if is_loss(name) then return name end
    local cls = ALIASES[name] and classes[ALIASES[name]]
    if not cls then
        local names = {}
        for k in pairs(ALIASES) do names[#names + 1] = k end
        table.sort(names)
        error(string.format("losses.get: unknown loss %s (known: %s)", tostring(name),
            table.concat(names, ", ")), 2)
    end
    return cls.new(opts)
end

function losses.from_config(cfg)
    if type(cfg) ~= "table" or not classes[cfg.type] then
        error("losses.from_config: not a loss config (type " ..
            tostring(type(cfg) == "table" and cfg.type) .. ")", 2)
    end
    if cfg.type == "Sum" then
        local terms = {}
        for i, t in ipairs(cfg.terms or {}) do terms[i] = { t.weight, losses.from_config(t.loss) } end
        return Sum.new(terms)
    end
    local opts = {}
    for k, v in pairs(cfg) do if k ~= "type" then opts[k] = v end end
    return classes[cfg.type].new(opts)
end

return losses
