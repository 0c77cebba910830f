-- Finite-difference gradient check.
--
--   local gradcheck = require "helpers.gradcheck"
--   gradcheck(f, {x, w, ...}, {eps = 1e-6, atol = 1e-5, rtol = 1e-4, name = "conv2d"})
--
-- f takes the inputs and returns a tensor.  Every input that requires grad
-- (it must be float64: in float32 a central difference with eps = 1e-6 is
-- mostly rounding noise) is checked: the analytic gradient of
-- L = sum(f(inputs) * W), for a fixed random W, comes from whorl.grad, and
-- the numeric one from central differences, perturbing one element at a
-- time in place under no_grad.  A mismatch raises an error naming the op,
-- the input, the element and the largest difference; success returns true.
--
-- W is drawn from a fixed seed with the global generator saved and
-- restored around it, so a gradcheck neither depends on nor disturbs the
-- random sequence of the spec that calls it.
local whorl = require "whorl"

local M = {}

local DEFAULTS = { eps = 1e-6, atol = 1e-5, rtol = 1e-4, seed = 1234 }

local function describe_fn(f, opts)
    if opts.name then return opts.name end
    local info = debug.getinfo(f, "S")
    return string.format("function at %s:%d", info.short_src, info.linedefined)
end

-- The values of a tensor as a flat row-major Lua array of numbers.
local function flat(t)
    local bytes = t:double():bytes()
    local n = #bytes // 8
    local out = {}
    for i = 1, n do out[i] = string.unpack("<d", bytes, (i - 1) * 8 + 1) end
    return out
end
M.flat = flat

-- The 1-based multi-index of flat element k (1-based) of a tensor of `size`.
local function multi_index(size, k)
    local idx, rem = {}, k - 1
    for d = #size, 1, -1 do
        idx[d] = rem % size[d] + 1
        rem = rem // size[d]
    end
    return idx
end

local function index_str(idx)
    return "(" .. table.concat(idx, ",") .. ")"
end

local function call_f(f, inputs, what)
    local out = f(table.unpack(inputs, 1, inputs.n or #inputs))
    if not whorl.is_tensor(out) then
        error(string.format("gradcheck: %s must return a tensor, got %s", what, type(out)), 3)
    end
    return out
end

local function weighted_sum(values, w)
    local s = 0
    for i = 1, #values do s = s + values[i] * w[i] end
    return s
end

-- Numeric gradient of sum(f(inputs) * W) with respect to inputs[i], as a
-- flat array; W is given flat.  Restores each perturbed element exactly.
function M.numeric(f, inputs, i, wflat, eps)
    eps = eps or DEFAULTS.eps
    local x = inputs[i]
    local size = x:size()
    local grad = {}
    whorl.no_grad(function()
        for k = 1, x:numel() do
            local idx = multi_index(size, k)
            idx[#idx + 1] = 0
            local orig = x:get(table.unpack(idx, 1, #idx - 1))
            idx[#idx] = orig + eps
            x:set(table.unpack(idx))
            local plus = weighted_sum(flat(call_f(f, inputs, "f")), wflat)
            idx[#idx] = orig - eps
            x:set(table.unpack(idx))
            local minus = weighted_sum(flat(call_f(f, inputs, "f")), wflat)
            idx[#idx] = orig
            x:set(table.unpack(idx))
            grad[k] = (plus - minus) / (2 * eps)
        end
    end)
    return grad
end

local function check(f, inputs, opts)
    opts = opts or {}
    local eps = opts.eps or DEFAULTS.eps
    local atol = opts.atol or DEFAULTS.atol
    local rtol = opts.rtol or DEFAULTS.rtol
    local what = describe_fn(f, opts)

    local checked = {}
    for i = 1, #inputs do
        local x = inputs[i]
        if whorl.is_tensor(x) and x.requires_grad then
            if x:dtype() ~= "float64" then
                error(string.format("gradcheck (%s): input %d is %s; checked inputs must be "
                    .. "float64 (use :double())", what, i, x:dtype()), 2)
            end
            checked[#checked + 1] = i
        end
    end
    if #checked == 0 then
        error(string.format("gradcheck (%s): no input requires grad, nothing to check", what), 2)
    end

    local out = call_f(f, inputs, what)
    local saved_rng = whorl.get_rng_state()
    whorl.manual_seed(opts.seed or DEFAULTS.seed)
    local w = whorl.randn(out:size(), { dtype = out:type() })
    whorl.set_rng_state(saved_rng)
    local wflat = flat(w)

    local targets = {}
    for j, i in ipairs(checked) do targets[j] = inputs[i] end
    local grads = whorl.grad(out, targets, { grad_outputs = w })

    for j, i in ipairs(checked) do
        local x = inputs[i]
        local analytic = flat(grads[j])
        if #analytic ~= x:numel() then
            error(string.format("gradcheck (%s): gradient of input %d has %d elements, the "
                .. "input has %d", what, i, #analytic, x:numel()), 2)
        end
        local numeric = M.numeric(f, inputs, i, wflat, eps)
        local worst, worst_k, worst_excess = 0, nil, 0
        for k = 1, #numeric do
            local a, n = analytic[k], numeric[k]
            local diff = math.abs(a - n)
            local excess = diff - (atol + rtol * math.abs(n))
            if diff ~= diff then excess = math.huge end -- NaN on either side fails
            if diff > worst or diff ~= diff then worst = diff end
            if excess > worst_excess or (excess > 0 and not worst_k) then
                worst_excess, worst_k = excess, k
            end
        end
        if worst_k then
            local idx = multi_index(x:size(), worst_k)
            error(string.format("gradcheck (%s): gradient of input %d differs at element %s: "
                .. "analytic %.10g, numeric %.10g (largest difference over the input %.3g; "
                .. "atol %g, rtol %g)", what, i, index_str(idx), analytic[worst_k],
                numeric[worst_k], worst, atol, rtol), 2)
        end
    end
    return true
end

return setmetatable(M, { __call = function(_, ...) return check(...) end })
