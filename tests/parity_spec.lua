-- Reference parity with Keras/PyTorch (tests/fixtures/parity_reference.json,
-- written by tests/fixtures/make_reference.py): the seed autoencoder at a
-- 32x32 input with fixed weights and batch, its output, Keras' MSE and
-- binary cross-entropy, every parameter's gradient, and the weights after 3
-- RMSprop (MSE) and 3 Adam (BCE) steps with Keras' defaults; then SSIM.
--
-- Everything runs twice: in float32 (the dtype models train in), to 1e-4
-- relative, and in float64, to 1e-6.  A relative difference is
-- |whorl - ref| / max(|ref|, floor): an element far below its tensor's
-- scale carries only the absolute rounding noise of the sums that made it,
-- so floor is a fraction of the tensor's largest |ref|: 1e-1 in float32
-- (float32 sums of 2048 products round at about 1e-6 of the largest term),
-- 1e-3 in float64.  Scalars are plain relative differences.  The largest
-- difference of each check is printed.
local whorl = require "whorl"
local nn = require "whorl.nn"
local optim = require "whorl.optim"
local cjson = require "cjson"
local autoencoder = require "autoencoder224"

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
-- tolerance and floor fraction per dtype
local TOL = { float32 = 1e-4, float64 = 1e-6 }
local FLOOR = { float32 = 1e-1, float64 = 1e-3 }

local function load(name)
    local f = assert(io.open(HERE .. "fixtures/" .. name, "r"))
    local doc = cjson.decode(f:read("a"))
    f:close()
    return doc
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_VALUE = {}
for i = 1, #B64 do B64_VALUE[B64:byte(i)] = i - 1 end

local decoded = {}

local function b64decode(s)
    if decoded[s] then return decoded[s] end
    local out, n = {}, 0
    for i = 1, #s, 4 do
        local a, b, c, d = s:byte(i, i + 3)
        local v = (B64_VALUE[a] << 18) | (B64_VALUE[b] << 12)
            | ((B64_VALUE[c] or 0) << 6) | (B64_VALUE[d] or 0)
        local bytes = string.char((v >> 16) & 255, (v >> 8) & 255, v & 255)
        if d == 61 then bytes = bytes:sub(1, c == 61 and 1 or 2) end
        n = n + 1
        out[n] = bytes
    end
    decoded[s] = table.concat(out)
    return decoded[s]
end

local function numel(shape)
    local n = 1
    for _, s in ipairs(shape) do n = n * s end
    return n
end

local function u8_tensor(e)
    return whorl.from_bytes(b64decode(e.u8), "uint8", e.shape)
end

-- Images stored as bytes u stand for u / 256 (exact in float32).
local function image(e, dtype)
    return u8_tensor(e):to(dtype):mul_(1 / 256)
end

local function f32_values(e)
    local bytes = b64decode(e.f32)
    return whorl.from_bytes(bytes, "float32", { #bytes // 4 }):totable()
end

local ref = load("parity_reference.json")

-- Largest relative difference between tensor t and a fixture entry (all
-- values, or the sampled positions plus the whole-tensor sums).
local function difference(t, e, floor_fraction)
    local size = t:size()
    assert(#size == #e.shape, "rank differs from the reference")
    for d = 1, #size do assert(size[d] == e.shape[d], "shape differs from the reference") end
    local flat = t:contiguous():view(-1):double():totable()
    local refv = f32_values(e)
    local got = flat
    if e.sampled then
        got = {}
        local s = ref.sample
        for j = 0, s.count - 1 do got[j + 1] = flat[(j * s.stride + s.offset) % #flat + 1] end
    end
    local scale = 0
    for _, v in ipairs(refv) do scale = math.max(scale, math.abs(v)) end
    local floor = math.max(scale * floor_fraction, 1e-30)
    local worst, at = 0, 0
    for i, r in ipairs(refv) do
        local d = math.abs(got[i] - r) / math.max(math.abs(r), floor)
        if d > worst then worst, at = d, i end
    end
    if e.sum_abs then
        local t64 = t:double()
        local sum, sum_abs, sum_sq = t64:sum():item(), t64:abs():sum():item(), t64:sum_squares()
        worst = math.max(worst, math.abs(sum_abs - e.sum_abs) / e.sum_abs,
            math.abs(sum_sq - e.sum_sq) / e.sum_sq, math.abs(sum - e.sum) / e.sum_abs)
    end
    return worst, at
end

-- Checks every tensor of a list against entries, prints the largest
-- difference and fails beyond tol.
local function check_all(what, tensors, entries, names, dtype)
    local tol = TOL[dtype]
    assert.are.equal(#entries, #tensors)
    local worst, name = 0, "?"
    for i, t in ipairs(tensors) do
        local d = difference(t, entries[i], FLOOR[dtype])
        if d > worst then worst, name = d, names[i] end
    end
    print(string.format("    %-34s largest relative difference %.2e (%s)", what, worst, name))
    assert(worst <= tol, string.format("%s: %s differs by %.3e relative (tolerance %.0e)", what,
        name, worst, tol))
end

local function check_scalar(what, got, want, dtype)
    local tol = TOL[dtype]
    local d = math.abs(got - want) / math.abs(want)
    print(string.format("    %-34s relative difference %.2e", what, d))
    assert(d <= tol, string.format("%s: %.9g vs reference %.9g", what, got, want))
end

local PARAM_NAMES = {}
for i, w in ipairs(ref.weights) do PARAM_NAMES[i] = w.name end

-- The seed model at 32x32 with the fixture's weights, in dtype.
local function seed_model(dtype)
    nn.clear_session()
    local model = autoencoder{ input_size = 32 }
    if dtype ~= "float32" then model:to(dtype) end
    local params = model:parameters()
    assert.are.equal(#ref.weights, #params)
    whorl.no_grad(function()
        for i, e in ipairs(ref.weights) do
            -- float32(q) * float32(scale): one rounding, as in the script
            local w = u8_tensor({ u8 = e.levels_u8, shape = e.shape }):float():add_(-128):mul_(e.scale)
            params[i]:copy_(w)
        end
    end)
    return model
end

local function step_run(dtype, opt_name, loss)
    local model = seed_model(dtype)
    local x, target = image(ref.input_u8, dtype), image(ref.target_u8, dtype)
    local opt = optim[opt_name](model)
    for _ = 1, ref.steps do
        opt:zero_grad()
        loss(model(x), target):backward()
        opt:step()
    end
    return model:parameters()
end

for _, dtype in ipairs({ "float32", "float64" }) do
    describe("seed autoencoder parity in " .. dtype, function()
        local model, x, target

        before_each(function()
            model = seed_model(dtype)
            x, target = image(ref.input_u8, dtype), image(ref.target_u8, dtype)
        end)

        it("gives the reference output, MSE and binary cross-entropy", function()
            print("")
            local y = model(x)
            check_all("output", { y }, { ref.output }, { "output" }, dtype)
            check_scalar("MSE", nn.losses.MSE()(y, target):item(), ref.mse, dtype)
            check_scalar("BCE (Keras clipping)", nn.losses.BCE()(y, target):item(), ref.bce, dtype)
        end)

        it("gives every parameter's gradient for both losses", function()
            print("")
            for _, case in ipairs({ { "MSE", ref.grads_mse }, { "BCE", ref.grads_bce } }) do
                model:zero_grad()
                nn.losses.get(case[1])(model(x), target):backward()
                local grads = {}
                for i, p in ipairs(model:parameters()) do grads[i] = p.grad end
                check_all("gradients of " .. case[1], grads, case[2], PARAM_NAMES, dtype)
            end
        end)

        it("matches Keras' RMSprop after 3 steps on the MSE", function()
            print("")
            local params = step_run(dtype, "RMSprop", nn.losses.MSE())
            check_all("weights after 3 RMSprop steps", params, ref.rmsprop.weights, PARAM_NAMES, dtype)
        end)

        it("matches Keras' Adam after 3 steps on the BCE", function()
            print("")
            local params = step_run(dtype, "Adam", nn.losses.BCE())
            check_all("weights after 3 Adam steps", params, ref.adam.weights, PARAM_NAMES, dtype)
        end)
    end)
end

describe("SSIM parity", function()
    local s = ref.ssim
    for _, dtype in ipairs({ "float32", "float64" }) do
        it("matches the published definition with a 2-d Gaussian window in " .. dtype, function()
            print("")
            local x = image(s.x_u8, dtype)
            x.requires_grad = true
            local y = image(s.y_u8, dtype)
            local mask = u8_tensor(s.mask_u8):to(dtype)
            check_scalar("mean SSIM", nn.losses.ssim(x, y):item(), s.ssim, dtype)
            local loss = nn.losses.SSIM()
            local g = whorl.grad(loss(x, y), { x })[1]
            check_all("gradient of 1 - SSIM", { g }, { s.grad }, { "x" }, dtype)
            local wl = loss(x, y, mask)
            check_scalar("mask-weighted SSIM loss", wl:item(), s.weighted_loss, dtype)
            g = whorl.grad(wl, { x })[1]
            check_all("gradient of the weighted loss", { g }, { s.weighted_grad }, { "x" }, dtype)
            local combo = 0.84 * nn.losses.L1() + 0.16 * nn.losses.SSIM()
            check_scalar("0.84 L1 + 0.16 (1 - SSIM)", combo(x, y):item(), s.l1_ssim_combo, dtype)
        end)
    end
end)
