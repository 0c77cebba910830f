-- The option handling the seed autoencoders share: defaults, unknown-option
-- errors, and the input-size check (every pooling halves the image, so the
-- size must divide by 2^pools for the output to match the input).
--
--   local make = require "autoencoder_options"
--   return make("autoencoder224", DEFAULTS, ALLOWED, function(o) return #o.filters - 1 end, build)
local nn = require "whorl.nn"

return function(name, defaults, allowed, pools_of, build)
    return function(opts)
        opts = opts or {}
        if type(opts) ~= "table" then error(name .. ": options must be a table", 2) end
        for key in pairs(opts) do
            if not allowed[key] then error(string.format("%s: unknown option '%s'", name, tostring(key)), 2) end
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
        if o.seed ~= nil then return nn.init.with_seed(o.seed, build, o) end
        return build(o)
    end
end
