-- The seed article's 100x100 convolutional autoencoder
-- (../shared/reference/seed-article-keras-100px.txt) as an nn.Sequential.
--
-- The article shows its Keras code only as a picture; its text says the
-- model "is simply a series of Conv2D and MaxPooling layers, followed by
-- Conv2D and UpSampling2D layers", takes a 100x100x1 array and returns one
-- of the same shape, and states no parameter count.  The layers below are
-- the Datacamp/KDNuggets convolutional autoencoder it cites as its source,
-- sized for 100x100 (two halvings: 100 -> 50 -> 25):
--
--   Input (1, 100, 100)
--   Conv2D 32 relu, MaxPool 2, Conv2D 64 relu, MaxPool 2          (encoder)
--   Conv2D 64 relu, UpSample 2, Conv2D 32 relu, UpSample 2,
--   Conv2D 1 sigmoid                                              (decoder)
--   3x3 kernels, "same" padding, Keras' default initialisation: 74,497 parameters.
--
-- Training setup in the article: Adam (Keras' defaults, lr 0.001) and binary
-- cross-entropy, on SOCOFing prints rescaled to 100x100:
--
--   local autoencoder = require "autoencoder100"
--   local model = autoencoder{seed = 13}
--   whorl.fit{model = model, loss = nn.losses.BCE(), optimizer = optim.Adam(model), ...}
--   local small = autoencoder{input_size = 32, filters = {8, 16}, seed = 1}
--
-- Options:
--   input_size  100, a number or {h, w}; -1 accepts any size; sizes must be
--               divisible by 2^#filters
--   channels    1, input and output channels
--   filters     {32, 64}: the encoder's widths, each followed by a 2x2 max
--               pooling; the decoder mirrors them (last width first), each
--               followed by a 2x upsampling, then a sigmoid convolution
--   kernel_size 3
--   seed        draw the weights from nn.init.generator(seed) (bitwise
--               reproducible, global generator untouched); nil uses it
--   name        the model's name (default Keras' automatic "functional...")
--   dtype       "float32"
local nn = require "whorl.nn"

local DEFAULTS = { input_size = 100, channels = 1, filters = { 32, 64 }, kernel_size = 3 }

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
    local cin = o.channels
    for _, f in ipairs(filters) do                       -- encoder
        layers[#layers + 1] = conv(cin, f, "relu")
        layers[#layers + 1] = nn.MaxPool2d(2)
        cin = f
    end
    for i = #filters, 1, -1 do                           -- decoder
        layers[#layers + 1] = conv(cin, filters[i], "relu")
        layers[#layers + 1] = nn.Upsample{ scale = 2 }
        cin = filters[i]
    end
    layers[#layers + 1] = conv(cin, o.channels, "sigmoid")
    layers.name = o.name or nn.unique_name("functional")
    return nn.Sequential(layers)
end

return require("autoencoder_options")("autoencoder100", DEFAULTS, ALLOWED, function(o) return #o.filters end, build)
