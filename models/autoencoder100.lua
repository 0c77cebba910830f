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

-- Encoder: each width, then a halving; decoder: the widths again, last first,
-- each followed by a doubling.
local function body(o, conv, add)
    local filters, cin = o.filters, o.channels
    for _, f in ipairs(filters) do
        add(conv(cin, f, "relu"))
        add(nn.MaxPool2d(2))
        cin = f
    end
    for i = #filters, 1, -1 do
        add(conv(cin, filters[i], "relu"))
        add(nn.Upsample{ scale = 2 })
        cin = filters[i]
    end
    return cin
end

return require("autoencoder_options")("autoencoder100", DEFAULTS, function(o) return #o.filters end, body)
