-- What the seed autoencoders share: the options (defaults, unknown-option
-- errors, the input-size check: every pooling halves the image, so the size
-- must divide by 2^pools for the output to match the input) and the frame
-- of the nn.Sequential (the Input layer, the final sigmoid convolution back
-- to `channels`, the model's name). Each model gives only its body, the
-- encoder and decoder between Input and that last convolution:
--
--   local make = require "autoencoder_options"
--   local function body(o, conv, add)      -- conv(cin, cout, act) builds a layer, add(layer) appends it
--       ...; return cin                    -- the width the last convolution takes
--   end
--   return make("autoencoder224", DEFAULTS, function(o) return #o.filters - 1 end, body)
--
-- Options every model takes: input_size, channels, filters, kernel_size,
-- seed, name, dtype (see autoencoder100.lua and autoencoder224.lua).
local nn = require "whorl.nn"

local ALLOWED = { input_size = true, channels = true, filters = true, kernel_size = true,
    seed = true, name = true, dtype = true }

-- The layers are made in order (Input, body, last convolution, then the
-- name), so automatic layer names and seeded weights follow the layer order.
local function build(o, size, body)
    local k, dtype = o.kernel_size, o.dtype
    local function conv(cin, cout, act)
        return nn.Conv2d(cin, cout, k, { padding = "same", activation = act, dtype = dtype })
    end
    local layers = { nn.Input{ shape = { o.channels, size[1], size[2] } } }
    local cin = body(o, conv, function(layer) layers[#layers + 1] = layer end)
    layers[#layers + 1] = conv(cin, o.channels, "sigmoid")
    layers.name = o.name or nn.unique_name("functional")
    return nn.Sequential(layers)
end

return function(name, defaults, pools_of, body)
    return function(opts)
        opts = opts or {}
        if type(opts) ~= "table" then error(name .. ": options must be a table", 2) end
        for key in pairs(opts) do
            if not ALLOWED[key] then error(string.format("%s: unknown option '%s'", name, tostring(key)), 2) end
        end
        local o = {}
        for key, v in pairs(defaults) do o[key] = v end
        for key, v in pairs(opts) do o[key] = v end
        if type(o.filters) ~= "table" or #o.filters == 0 then
            error(name .. ": filters must be a non-empty list of widths", 2)
        end
        local size = o.input_size
        if type(size) == "number" then size = { size, size } end
        if type(size) ~= "table" or #size ~= 2 then error(name .. ": input_size must be a number or {h, w}", 2) end
        local div = 2 ^ pools_of(o)
        for _, s in ipairs(size) do
            if s ~= -1 and (math.type(s) ~= "integer" or s < 1 or s % div ~= 0) then
                error(string.format("%s: input_size %s must be divisible by %d (one halving per pooling) " ..
                    "so the output matches the input", name, tostring(s), div), 2)
            end
        end
        if o.seed ~= nil then return nn.init.with_seed(o.seed, build, o, size, body) end
        return build(o, size, body)
    end
end
