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

local ALLOWED = { input_size = true, channels = true, filters = true, kernel_size = true,
    seed = true, name = true, dtype = true }

local function build(o)
    local filters, k, dtype = o.filters, o.kernel_size, o.dtype
    local function conv(cin, cout, act)
        return nn.Conv2d(cin, cout, k, { padding = "same", activation = act, dtype = dtype })
    end
    local size = o.input_size
    if type(size) == "number" then size = { size, size } end
    local layers = { nn.Input{ shape = { o.channels, size[1], size[2] } } }
    -- encoder
    local cin = o.channels
    for i, f in ipairs(filters) do
        layers[#layers + 1] = conv(cin, f, "relu")
        if i < #filters then layers[#layers + 1] = nn.MaxPool2d(2) end
        cin = f
    end
    -- decoder: the deepest width again, then back up without the first
    layers[#layers + 1] = conv(cin, filters[#filters], "relu")
    cin = filters[#filters]
    for i = #filters - 1, 2, -1 do
        layers[#layers + 1] = nn.Upsample{ scale = 2 }
        layers[#layers + 1] = conv(cin, filters[i], "relu")
        cin = filters[i]
    end
    if #filters > 1 then layers[#layers + 1] = nn.Upsample{ scale = 2 } end
    layers[#layers + 1] = conv(cin, o.channels, "sigmoid")
    layers.name = o.name or nn.unique_name("functional")
    return nn.Sequential(layers)
end

return require("autoencoder_options")("autoencoder224", DEFAULTS, ALLOWED, function(o) return #o.filters - 1 end, build)
