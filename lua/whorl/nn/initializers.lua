-- Weight initialisers (nn.init) and seeded generators.
--
-- An initialiser is named by a string ("glorot_uniform"), a table with a
-- type and its settings ({type = "constant", value = 0.1}), or a function
-- (shape, fan_in, fan_out, dtype) -> tensor; strings and tables keep a
-- model's config plain data, functions do not.
--
-- Keras' initialisers (the defaults of every layer: glorot_uniform kernels,
-- zero biases):
--   glorot_uniform  U(-l, l), l = sqrt(6 / (fan_in + fan_out))
--   glorot_normal   truncated normal, stddev sqrt(2 / (fan_in + fan_out))
--   he_uniform      U(-l, l), l = sqrt(6 / fan_in)
--   he_normal       truncated normal, stddev sqrt(2 / fan_in)
--   lecun_uniform, lecun_normal   the same with 3 / fan_in and 1 / fan_in
--   uniform {minval = -0.05, maxval = 0.05}, normal {mean = 0, stddev = 0.05},
--   zeros, ones, constant {value = v}
-- Keras' truncated normals redraw values beyond two standard deviations and
-- scale the stddev by 1 / 0.87962566103423978 so the variance is kept.
-- PyTorch's (plain normal, ReLU gain):
--   kaiming_normal  N(0, 2 / fan_in)      kaiming_uniform  U(-l, l), l = sqrt(6 / fan_in)
--
-- Fans are Keras': a conv kernel has fan_in = in_channels * kh * kw and
-- fan_out = out_channels * kh * kw (for a transposed conv Keras swaps the
-- roles, and so do we); a dense/linear kernel has fan_in = inputs.
--
-- Draws come from whorl's global generator (whorl.manual_seed), unless
-- made inside a generator:
--   local gen = nn.init.generator(42)
--   local model = gen:run(build_model)        -- same seed, same bits
--   nn.init.with_seed(42, build_model, opts)  -- one-off form
-- A generator keeps its own stream between runs and leaves the global one
-- as it found it, so building a model does not shift data shuffling.
local whorl = require "whorl"

local init = {}

local TRUNC_STD = 0.87962566103423978

local function uniform(shape, lo, hi, dtype)
    return whorl.rand(shape, dtype):mul_(hi - lo):add_(lo)
end

-- Standard normal values truncated to [-2, 2] by redrawing, as a tensor.
local function truncated_standard_normal(shape, dtype)
    local n = 1
    for _, s in ipairs(shape) do n = n * s end
    local vals = n > 0 and whorl.randn(n, "float64"):totable() or {}
    local bad = {}
    for i = 1, n do if math.abs(vals[i]) > 2 then bad[#bad + 1] = i end end
    while #bad > 0 do
        local fresh = whorl.randn(#bad, "float64"):totable()
        local still = {}
        for j, i in ipairs(bad) do
            local v = fresh[j]
            if math.abs(v) > 2 then still[#still + 1] = i else vals[i] = v end
        end
        bad = still
    end
    if n == 0 then return whorl.zeros(shape, dtype) end
    return whorl.tensor(vals, "float64"):view(shape):to(dtype)
end

local function variance_scaling(scale, mode, distribution)
    return function(shape, fan_in, fan_out, dtype)
        local n = mode == "fan_in" and fan_in or mode == "fan_out" and fan_out
            or (fan_in + fan_out) / 2
        n = math.max(1, n)
        if distribution == "uniform" then
            local limit = math.sqrt(3 * scale / n)
            return uniform(shape, -limit, limit, dtype)
        elseif distribution == "truncated_normal" then
            return truncated_standard_normal(shape, dtype):mul_(math.sqrt(scale / n) / TRUNC_STD)
        else
            return whorl.randn(shape, dtype):mul_(math.sqrt(scale / n))
        end
    end
end

local makers = {
    glorot_uniform = function() return variance_scaling(1, "fan_avg", "uniform") end,
    glorot_normal = function() return variance_scaling(1, "fan_avg", "truncated_normal") end,
    he_uniform = function() return variance_scaling(2, "fan_in", "uniform") end,
    he_normal = function() return variance_scaling(2, "fan_in", "truncated_normal") end,
    lecun_uniform = function() return variance_scaling(1, "fan_in", "uniform") end,
    lecun_normal = function() return variance_scaling(1, "fan_in", "truncated_normal") end,
    kaiming_uniform = function() return variance_scaling(2, "fan_in", "uniform") end,
    kaiming_normal = function() return variance_scaling(2, "fan_in", "normal") end,
    zeros = function() return function(shape, _, _, dtype) return whorl.zeros(shape, dtype) end end,
    ones = function() return function(shape, _, _, dtype) return whorl.ones(shape, dtype) end end,
    constant = function(spec)
        local v = spec.value or 0
        if type(v) ~= "number" then error("init: constant needs a number value", 0) end
        return function(shape, _, _, dtype) return whorl.full(shape, v, dtype) end
    end,
    uniform = function(spec)
        local lo, hi = spec.minval or -0.05, spec.maxval or 0.05
        return function(shape, _, _, dtype) return uniform(shape, lo, hi, dtype) end
    end,
    normal = function(spec)
        local mean, std = spec.mean or 0, spec.stddev or 0.05
        return function(shape, _, _, dtype) return whorl.randn(shape, dtype):mul_(std):add_(mean) end
    end,
}
makers.xavier_uniform = makers.glorot_uniform
makers.xavier_normal = makers.glorot_normal

function init.names()
    local out = {}
    for k in pairs(makers) do out[#out + 1] = k end
    table.sort(out)
    return out
end

-- The function (shape, fan_in, fan_out, dtype) -> tensor that spec names;
-- `where` goes into errors ("Conv2d kernel_initializer").
function init.resolve(spec, where)
    if type(spec) == "function" then return spec end
    local name, settings = spec, {}
    if type(spec) == "table" then name, settings = spec.type, spec end
    local maker = type(name) == "string" and makers[name]
    if not maker then
        error(string.format("%s: unknown initializer %s (known: %s, or a function)", where,
            type(name) == "string" and string.format("'%s'", name) or type(spec),
            table.concat(init.names(), ", ")), 0)
    end
    return maker(settings)
end

-- A new tensor of `shape` initialised by spec.
function init.make(spec, shape, fan_in, fan_out, dtype, where)
    local t = init.resolve(spec, where)(shape, fan_in, fan_out, dtype or "float32")
    if not whorl.is_tensor(t) then
        error(string.format("%s: the initializer returned a %s, not a tensor", where, type(t)), 0)
    end
    return t
end

-- Fills an existing tensor in place (PyTorch's nn.init.*_ style).
function init.fill(t, spec, fan_in, fan_out)
    local v = init.make(spec, t:size(), fan_in or 1, fan_out or 1, t:dtype(), "init.fill")
    whorl.no_grad(function() t:copy_(v) end)
    return t
end

-- ---- generators ---------------------------------------------------------------------

local Generator = {}
Generator.__index = Generator

function init.generator(seed)
    if math.type(seed) ~= "integer" then
        error("init.generator: the seed must be an integer, got " .. tostring(seed), 2)
    end
    local saved = whorl.get_rng_state()
    whorl.manual_seed(seed)
    local g = setmetatable({ seed = seed, state = whorl.get_rng_state() }, Generator)
    whorl.set_rng_state(saved)
    return g
end

-- Runs fn(...) with this generator as the global one, then puts the global
-- generator back; the generator's stream goes on at the next run.
function Generator:run(fn, ...)
    local saved = whorl.get_rng_state()
    whorl.set_rng_state(self.state)
    local r = table.pack(pcall(fn, ...))
    self.state = whorl.get_rng_state()
    whorl.set_rng_state(saved)
    if not r[1] then error(r[2], 0) end
    return table.unpack(r, 2, r.n)
end

function init.with_seed(seed, fn, ...)
    return init.generator(seed):run(fn, ...)
end

return init
