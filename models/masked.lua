-- A restoring model that finds the damage: a shared U-Net trunk
-- (models/unet.lua, without its head) with two 1x1 sigmoid heads, the damage
-- mask m (1 channel) and the content c (channels), and the composite
--
--     output = m * c + (1 - m) * input
--
-- so pixels it judges undamaged (m near 0) pass through untouched.  The
-- composite is the model's output, so whorl.fit, evaluate and predict treat
-- it as any restoring model; forward also returns the mask and the content
-- as second and third values and keeps them, with the graph, as
-- model.last_mask and model.last_content until the next forward.
--
--   local masked = require "masked"
--   local model = masked{depth = 2, filters = 16, seed = 13}
--   local out, mask, content = model(x)
--   whorl.fit{model = model, optimizer = optim.Adam(model),
--       loss = masked.loss{model = model, mask_weight = 1},
--       train = augment.damaged(clean, {with_mask = true, seed = 1})}   -- x, y, mask batches
--
-- masked.loss(opts) returns function(pred, target, weight) -> scalar tensor:
--   reconstruction  "mse" (default), "l1" or any whorl.losses object (SSIM,
--                   a Sum...) of the composite against the clean target,
--                   over the whole image
--   + mask_weight (1) * BCE(model.last_mask, weight), when the trainer passes
--                   the true damage mask as the third value (augment.damaged
--                   with with_mask = true; whorl.synth.damage's mask); without
--                   one (or with no model given) only the reconstruction counts.
--   + content_weight (0) * the reconstruction loss of the content head alone
--                   (model.last_content) over the whole image: the content
--                   head then learns as a plain U-Net would, even where the
--                   mask does not (yet) let it through; without it a mask
--                   that starts near 0 starves the content of gradient.
--   opts: model (the masked model whose last forward made pred), reconstruction,
--         mask_weight, content_weight.
-- Options of the model: those of models/unet.lua except head and
-- out_channels (depth 2, filters 16, kernel_size 3, batch_norm false,
-- channels 1, up "upsample", seed, name, dtype), and mask_bias (0), the
-- mask head's initial bias (-2: the model starts by passing its input
-- through, m = 0.12), and three that help the content keep the print's
-- detail (all false by default, so older checkpoints load unchanged):
--   standardize  the trunk sees x beside x scaled to zero mean and unit
--                deviation per image (faint or washed-out prints look like
--                any other; x itself still shows the mask head the damage)
--   input_skip   both heads see the trunk's input beside its features
--                (a ridge can be copied or rescaled straight through)
--   affine       content = clamp(g * s + b + r * d, 0, 1): s the standardized
--                input (x without standardize), a gain g and an offset b per
--                image from the features' means and maxima, d the content
--                head's change per pixel (starting at zero) times a share r
--                per image: a faint print is restored by its gain alone, d
--                draws what is missing
-- Registered as
-- "MaskedUNet" with module = "masked", so whorl.load rebuilds it.
local whorl = require "whorl"
local nn = require "whorl.nn"
local losses = require "whorl.losses"
local UNet = require "unet"

local Masked = nn.Module:extend("MaskedUNet", { module = "masked" })

local TRUNK = { depth = true, filters = true, kernel_size = true, batch_norm = true,
    channels = true, up = true, dtype = true }

local function build(self, trunk_opts, o)
    self.trunk = UNet(trunk_opts)
    local f = self.trunk.features
    -- with input_skip the heads also see the trunk's input itself: the
    -- content can then copy a ridge straight through (or rescale a faint
    -- one) instead of redrawing it from the trunk's smoother features
    if o.input_skip then f = f + (math.tointeger(trunk_opts.channels) or 1) end
    -- the mask starts near sigmoid(mask_bias) everywhere: with a negative
    -- bias the untrained model passes its input through (a damaged print
    -- is a better first guess than the untrained content head's grey)
    self.mask_head = nn.Conv2d(f, 1, 1, { activation = "sigmoid", dtype = o.dtype,
        bias_initializer = { type = "constant", value = o.mask_bias or 0 } })
    local channels = math.tointeger(o.channels) or 1
    if o.affine then
        -- per print, from the pooled features: a gain and an offset per
        -- channel, starting at a clean synthetic print's deviation (0.22)
        -- and mean (0.76), and how much of the per-pixel change to add
        -- (starting at sigmoid(0)).  The per-pixel change starts at zero:
        -- the first content is the standardized input at a clean print's
        -- contrast
        local start = {}
        for i = 1, channels do start[i], start[channels + i], start[2 * channels + i] = 0.22, 0.76, 0 end
        self.print_head = nn.Linear(2 * f, 3 * channels, { dtype = o.dtype,
            kernel_initializer = { type = "zeros" },
            bias_initializer = function(_, _, _, dtype) return whorl.tensor(start, { dtype = dtype }) end })
        self.content_head = nn.Conv2d(f, channels, 1, { dtype = o.dtype,
            kernel_initializer = { type = "zeros" } })
    else
        self.content_head = nn.Conv2d(f, channels, 1, { activation = "sigmoid", dtype = o.dtype })
    end
end

function Masked:__init(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("masked: options must be a table", 2) end
    local trunk_opts = { head = false }
    self.standardize = opts.standardize and true or false
    self.input_skip = opts.input_skip and true or false
    self.affine = opts.affine and true or false
    for k, v in pairs(opts) do
        if TRUNK[k] then
            trunk_opts[k] = v
        elseif k ~= "seed" and k ~= "name" and k ~= "mask_bias" and k ~= "standardize"
            and k ~= "input_skip" and k ~= "affine" then
            error(string.format("masked: unknown option '%s'", tostring(k)), 2)
        end
    end
    if self.standardize then trunk_opts.channels = 2 * (math.tointeger(opts.channels) or 1) end
    if opts.seed ~= nil then
        nn.init.with_seed(math.tointeger(opts.seed) or opts.seed, build, self, trunk_opts, opts)
    else
        build(self, trunk_opts, opts)
    end
end

-- x beside itself scaled to zero mean and unit deviation per image and
-- channel: faint and washed-out prints then look like any other to the
-- trunk, while x itself still tells the mask head what the damage did.
local function with_standardized(x)
    local mean = x:mean({ 3, 4 }, true)
    local centred = x - mean
    local deviation = (centred * centred):mean({ 3, 4 }, true):sqrt()
    return whorl.cat({ x, centred / (deviation + 1e-3) }, 2)
end

function Masked:forward(x)
    local input = self.standardize and with_standardized(x) or x
    local h = self.trunk(input)
    if self.input_skip then h = whorl.cat({ h, input }, 2) end
    local m = self.mask_head(h)
    local c = self.content_head(h)
    if self.affine then
        local n, channels = x:size()[1], x:size()[2]
        -- the mean and the maximum of each feature: a print's extremes
        -- (its paper white, its darkest ridge) tell its contrast
        local p = self.print_head(whorl.cat({ h:mean({ 3, 4 }), h:max({ 3, 4 }) }, 2))
        local function per_print(k, count) return p:narrow(2, k, count):reshape(n, count, 1, 1) end
        local gain, offset = per_print(1, channels), per_print(channels + 1, channels)
        -- a faint print needs none of the per-pixel change (its ridges are
        -- all there), an erased one all of it
        local redraw = per_print(2 * channels + 1, channels):sigmoid()
        local standardized = self.standardize and input:narrow(2, channels + 1, channels) or x
        c = (gain * standardized + offset + redraw * c):clamp(0, 1)
    end
    local out = m * c + (1 - m) * x
    rawset(self, "last_mask", m)
    rawset(self, "last_content", c)
    return out, m, c
end

local M = setmetatable({ Masked = Masked }, {
    __call = function(_, opts) return Masked(opts) end,
})

function M.loss(opts)
    opts = opts or {}
    for k in pairs(opts) do
        if k ~= "model" and k ~= "reconstruction" and k ~= "mask_weight" and k ~= "content_weight" then
            error("masked.loss: unknown option '" .. tostring(k) .. "'", 2)
        end
    end
    local rec_name = opts.reconstruction or "mse"
    local rec
    if rec_name == "mse" then rec = losses.MSE()
    elseif rec_name == "l1" then rec = losses.L1()
    elseif losses.is_loss(rec_name) then rec = rec_name
    else
        error("masked.loss: reconstruction must be \"mse\", \"l1\" or a whorl.losses object, got " ..
            tostring(rec_name), 2)
    end
    local bce = losses.BCE()
    local model, mask_weight, content_weight = opts.model, opts.mask_weight or 1, opts.content_weight or 0
    return function(pred, target, weight)
        local loss = rec(pred, target)
        if model and content_weight ~= 0 then
            local c = rawget(model, "last_content")
            if c then loss = loss + content_weight * rec(c, target) end
        end
        if model and whorl.is_tensor(weight) and mask_weight ~= 0 then
            local m = rawget(model, "last_mask")
            if m then loss = loss + mask_weight * bce(m, weight) end
        end
        return loss
    end
end

return M
