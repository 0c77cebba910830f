-- The seed convolutional autoencoder (../shared/reference/
-- seed-repo-keras-224px.txt) as an nn.Sequential:
--
--   Input (1, 224, 224)
--   Conv2D 32 relu, MaxPool 2, Conv2D 64 relu, MaxPool 2, Conv2D 128 relu   (encoder)
--   Conv2D 128 relu, UpSample 2, Conv2D 64 relu, UpSample 2, Conv2D 1 sigmoid (decoder)
--   3x3 kernels, "same" padding, Keras' default initialisation: 314,625 parameters.
--
--   local autoencoder = require "autoencoder224"
--   local model = autoencoder()                                   -- the seed
--   local small = autoencoder{input_size = 32, filters = {8, 16}, seed = 1}
--
-- Options:
--   input_size  224, a number or {h, w}; nil sizes (-1) accept any size
--               divisible by 2^(#filters - 1)
--   channels    1 (grey images), input and output channels
--   filters     {32, 64, 128}: the encoder's widths; there is one pooling
--               between consecutive entries and the decoder mirrors it with
--               the last width first and the first one dropped, as the seed
--   kernel_size 3
--   seed        draw the weights from nn.init.generator(seed) (bitwise
--               reproducible, global generator untouched); nil uses it
--   name        the model's name; by default Keras' automatic name of the
--               functional Model the seed built ("functional", "functional_1"...)
--   dtype       "float32"
-- The convolutions fuse their activation (one kernel pass per layer).
local nn = require "whorl.nn"

local DEFAULTS = { input_size = 224, channels = 1, filters = { 32, 64, 128 }, kernel_size = 3 }

local function body(o, conv, add)
    local filters, cin = o.filters, o.channels
    -- encoder: a halving between consecutive widths
    for i, f in ipairs(filters) do
        add(conv(cin, f, "relu"))
        if i < #filters then add(nn.MaxPool2d(2)) end
        cin = f
    end
    -- decoder: the deepest width again, then back up without the first
    add(conv(cin, filters[#filters], "relu"))
    cin = filters[#filters]
    for i = #filters - 1, 2, -1 do
        add(nn.Upsample{ scale = 2 })
        add(conv(cin, filters[i], "relu"))
        cin = filters[i]
    end
    if #filters > 1 then add(nn.Upsample{ scale = 2 }) end
    return cin
end

return require("autoencoder_options")("autoencoder224", DEFAULTS, function(o) return #o.filters - 1 end, body)
