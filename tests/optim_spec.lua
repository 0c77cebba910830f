-- whorl.optim: every optimizer variant against Keras 3 on a fixed gradient
-- sequence, schedules and ReduceLROnPlateau against Keras
-- (tests/fixtures/optim_reference.json, from make_reference.py), overfitting
-- one batch with each optimizer, clipping, state dicts and configs.
local whorl = require "whorl"
local nn = require "whorl.nn"
local optim = require "whorl.optim"
local cjson = require "cjson"
local autoencoder = require "autoencoder224"
local check = require "helpers.check"
local raises = check.raises

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local ref
do
    local f = assert(io.open(HERE .. "fixtures/optim_reference.json", "r"))
    ref = cjson.decode(f:read("a"))
    f:close()
end

local function tensor(values, shape)
    return whorl.tensor(values, "float64"):view(shape)
end

local function fixture_params()
    local ps = {}
    for i, v in ipairs(ref.params) do
        ps[i] = tensor(v, ref.shapes[i])
        ps[i].requires_grad = true
    end
    return ps
end

local function set_grads(ps, step)
    for i, p in ipairs(ps) do p.grad = tensor(ref.grads[step][i], ref.shapes[i]) end
end

local function rel_diff(got, want)
    local worst = 0
    for i, w in ipairs(want) do
        worst = math.max(worst, math.abs(got[i] - w) / math.max(math.abs(w), 1e-3))
    end
    return worst
end

local function describe_opts(o)
    local parts = {}
    for k, v in pairs(o) do parts[#parts + 1] = k .. "=" .. tostring(v) end
    table.sort(parts)
    return table.concat(parts, ", ")
end

describe("optimizers match Keras 3 on a fixed gradient sequence", function()
    for _, case in ipairs(ref.variants) do
        it(case.kind .. "{" .. describe_opts(case.opts) .. "}", function()
            local ps = fixture_params()
            local opt = optim[case.kind](ps, case.opts)
            for s = 1, #ref.grads do
                set_grads(ps, s)
                opt:step()
            end
            assert.are.equal(#ref.grads, opt.iterations)
            for i, p in ipairs(ps) do
                -- Keras holds lr in float32: differences of a few 1e-8 relative
                local d = rel_diff(p:contiguous():view(-1):totable(), case.result[i])
                assert(d < 1e-6, string.format("parameter %d differs by %.3g relative", i, d))
            end
        end)
    end
end)

describe("learning-rate schedules", function()
    local S = optim.schedules
    local made = {
        cosine = S.cosine{ initial_lr = 0.1, decay_steps = 10, alpha = 0.1 },
        cosine_warmup = S.cosine{ initial_lr = 0.0, decay_steps = 10, warmup_target = 0.1,
            warmup_steps = 5 },
        exponential = S.exponential{ initial_lr = 0.1, decay_steps = 3, decay_rate = 0.5 },
        exponential_staircase = S.exponential{ initial_lr = 0.1, decay_steps = 3, decay_rate = 0.5,
            staircase = true },
        piecewise = S.piecewise{ boundaries = { 3, 6 }, values = { 0.1, 0.05, 0.01 } },
    }

    it("give Keras' values step by step", function()
        for name, sched in pairs(made) do
            local want = ref.schedules[name]
            for step = 0, #want - 1 do
                local got = sched(step)
                assert(math.abs(got - want[step + 1]) <= 1e-6 * math.max(want[step + 1], 1e-3),
                    string.format("%s at step %d: %.9g, Keras %.9g", name, step, got, want[step + 1]))
            end
        end
    end)

    it("step: PyTorch's StepLR", function()
        local s = S.step{ initial_lr = 1, step_size = 3, gamma = 0.5 }
        assert.are.same({ 1, 1, 1, 0.5, 0.5, 0.5, 0.25 }, { s(0), s(1), s(2), s(3), s(4), s(5), s(6) })
    end)

    it("drive an optimizer, evaluated at the step count before each update", function()
        local p = whorl.tensor({ 1.0 }, "float64")
        p.requires_grad = true
        local sched = S.piecewise{ boundaries = { 1 }, values = { 0.5, 0.1 } }
        local opt = optim.SGD({ p }, { lr = sched })
        local used = {}
        for i = 1, 3 do
            p.grad = whorl.tensor({ 1.0 }, "float64")
            used[i] = opt:step()
        end
        assert.are.same({ 0.5, 0.5, 0.1 }, used)
        assert.is_true(math.abs(p:item() - (1 - 0.5 - 0.5 - 0.1)) < 1e-12)
        local again = S.from_config(cjson.decode(cjson.encode(sched:config())))
        assert.are.equal(sched(5), again(5))
        raises(function() S.cosine{ initial_lr = 0.1 } end, "decay_steps is required")
        raises(function() S.step{ initial_lr = 0.1, step_size = 2, gama = 0.5 } end,
            "unknown option 'gama'")
    end)

    it("ReduceLROnPlateau follows Keras' callback", function()
        local p = whorl.tensor({ 1.0 }, "float64")
        p.requires_grad = true
        local opt = optim.SGD({ p }, { lr = ref.plateau.initial_lr })
        local plateau = optim.ReduceLROnPlateau(opt, ref.plateau.opts)
        for i, v in ipairs(ref.plateau.values) do
            local lr = plateau:step(v)
            local want = ref.plateau.lrs[i]
            assert(math.abs(lr - want) <= 1e-6 * want,
                string.format("epoch %d: lr %.9g, Keras %.9g", i, lr, want))
        end
        local state = cjson.decode(cjson.encode(plateau:state_dict()))
        local copy = optim.ReduceLROnPlateau(opt, ref.plateau.opts)
        copy:load_state_dict(state)
        assert.are.same(plateau:state_dict(), copy:state_dict())
        local with_schedule = optim.SGD({ p }, { lr = optim.schedules.step{ initial_lr = 1, step_size = 1 } })
        raises(function() optim.ReduceLROnPlateau(with_schedule) end, "needs a constant lr")
    end)
end)

-- Eight smooth 32x32 images (stripes of several orientations and widths).
local function stripes()
    local ys = whorl.arange(32):view(1, 1, 32, 1):expand(1, 1, 32, 32)
    local xs = whorl.arange(32):view(1, 1, 1, 32):expand(1, 1, 32, 32)
    local imgs = {}
    for k = 1, 8 do
        local a, f = k * math.pi / 8, 0.15 + 0.03 * k
        imgs[k] = whorl.sin((xs * math.cos(a) + ys * math.sin(a)) * f) * 0.3 + 0.5
    end
    return whorl.cat(imgs, 1)
end

describe("each optimizer overfits one batch of 8 images", function()
    local batch = stripes()
    local STEPS = 100
    for _, case in ipairs({
        { "SGD", { lr = 0.2, momentum = 0.9, nesterov = true } },
        { "RMSprop", { lr = 0.005 } },
        { "Adam", { lr = 0.01 } },
        { "AdamW", { lr = 0.01 } },
    }) do
        it(case[1] .. ": the MSE falls by at least 90%", function()
            local model = autoencoder{ input_size = 32, filters = { 8, 16 }, seed = 1 }
            local opts = {}
            for k, v in pairs(case[2]) do opts[k] = v end
            opts.lr = optim.schedules.cosine{ initial_lr = case[2].lr, decay_steps = STEPS }
            local opt = optim[case[1]](model, opts)
            local loss_fn = nn.losses.MSE()
            local first, last
            for step = 1, STEPS do
                opt:zero_grad()
                local loss = loss_fn(model(batch), batch)
                loss:backward()
                opt:step()
                if step == 1 then first = loss:item() end
                last = loss:item()
            end
            print(string.format("    %-8s loss %.5f -> %.5f (%.1f%% lower)", case[1], first, last,
                100 * (1 - last / first)))
            assert(last <= 0.1 * first, string.format("%s: loss went from %.6f to %.6f", case[1],
                first, last))
        end)
    end
end)

describe("gradient clipping", function()
    it("by global norm scales all gradients together (Keras' clip_by_global_norm)", function()
        local a, b = whorl.zeros(2, "float64"), whorl.zeros(1, "float64")
        a.requires_grad, b.requires_grad = true, true
        a.grad, b.grad = whorl.tensor({ 3, 0 }, "float64"), whorl.tensor({ 4 }, "float64")
        local norm = optim.clip_grad_norm({ a, b }, 1)
        assert.are.equal(5, norm)
        assert.is_true(math.abs(a.grad[1] - 0.6) < 1e-15 and a.grad[2] == 0)
        assert.is_true(math.abs(b.grad:item() - 0.8) < 1e-15)
        assert.are.equal(1, optim.clip_grad_norm({ a, b }, 2)) -- below the limit: untouched
        assert.is_true(math.abs(b.grad:item() - 0.8) < 1e-15)
    end)

    it("refuses non-finite gradients instead of spreading them", function()
        local p = whorl.zeros(2, "float64")
        p.requires_grad = true
        p.grad = whorl.tensor({ 1, 0 }, "float64") / 0
        local opt = optim.Adam({ p }, { global_clipnorm = 1 })
        raises(function() opt:step() end, "Adam step 1", "global norm is")
    end)
end)

describe("optimizer state", function()
    local function tiny()
        return nn.Sequential{ nn.Conv2d(1, 2, 3, { padding = "same" }), nn.Conv2d(2, 1, 3) }
    end
    local x = whorl.rand({ 2, 1, 8, 8 })
    local y = whorl.rand({ 2, 1, 6, 6 })

    local function train(model, opt, steps)
        for _ = 1, steps do
            opt:zero_grad()
            nn.losses.MSE()(model(x), y):backward()
            opt:step()
        end
    end

    for _, kind in ipairs({ "SGD", "RMSprop", "Adam", "AdamW" }) do
        it(kind .. ": a saved and reloaded state continues bit for bit", function()
            local opts = kind == "SGD" and { momentum = 0.9 } or (kind == "RMSprop"
                and { momentum = 0.5, centered = true } or { amsgrad = kind == "Adam" })
            local a = nn.init.with_seed(3, tiny)
            local b = nn.init.with_seed(3, tiny)
            local oa = optim[kind](a, opts)
            train(a, oa, 2)
            -- b resumes from a's state after 2 steps
            b:load_state_dict(a:state_dict())
            local state, keys = oa:state_dict()
            for _, k in ipairs(keys) do
                local v = state[k]
                assert(type(v) == "number" or whorl.is_tensor(v), k .. " is neither number nor tensor")
            end
            local cfg = cjson.decode(cjson.encode(oa:config()))
            local ob = optim.from_config(cfg, b)
            ob:load_state_dict(state)
            assert.are.equal(2, ob.iterations)
            train(a, oa, 3)
            train(b, ob, 3)
            for i, p in ipairs(a:parameters()) do
                assert.are.equal(p:bytes(), b:parameters()[i]:bytes())
            end
        end)
    end

    it("reuses its slot tensors instead of allocating per step", function()
        local model = tiny()
        local opt = optim.Adam(model)
        train(model, opt, 1)
        local m1 = opt.slots.momentum[1]
        nn.losses.MSE()(model(x), y):backward()
        local before = whorl.memory_stats().live_bytes
        opt:step()
        assert.are.equal(before, whorl.memory_stats().live_bytes)
        assert.are.equal(m1, opt.slots.momentum[1])
    end)

    it("skips parameters without a gradient", function()
        local a, b = whorl.ones(2, "float64"), whorl.ones(2, "float64")
        a.requires_grad, b.requires_grad = true, true
        a.grad = whorl.ones(2, "float64")
        optim.SGD({ a, b }, { lr = 0.5 }):step()
        assert.are.same({ 0.5, 0.5 }, a:totable())
        assert.are.same({ 1, 1 }, b:totable())
    end)

    it("applies Keras' decoupled weight decay", function()
        local p = whorl.tensor({ 2.0 }, "float64")
        p.requires_grad = true
        p.grad = whorl.tensor({ 0.0 }, "float64")
        optim.SGD({ p }, { lr = 0.1, weight_decay = 0.5 }):step()
        assert.is_true(math.abs(p:item() - 2 * (1 - 0.5 * 0.1)) < 1e-15)
    end)

    it("reports bad state, options and parameters clearly", function()
        local model = tiny()
        local opt = optim.RMSprop(model)
        train(model, opt, 1)
        local state = opt:state_dict()
        local bad = {}
        for k, v in pairs(state) do bad[k] = v end
        bad["velocity.1"] = whorl.zeros(3)
        bad["momentum.2"] = whorl.zeros(2)
        bad["velocity.9"] = whorl.zeros(2)
        raises(function() opt:load_state_dict(bad) end, "'velocity.1' has shape [3], parameter 1",
            "unexpected entry 'momentum.2' for RMSprop", "'velocity.9' names parameter 9 of 4")
        raises(function() opt:load_state_dict({ iterations = -1 }) end, "iterations must be")
        raises(function() optim.Adam(model, { betas = 1 }) end, "Adam: unknown option 'betas'")
        raises(function() optim.Adam(model, { lr = "fast" }) end, "lr must be a number or a schedule")
        raises(function() optim.Adam(model, { clipnorm = 1, clipvalue = 1 }) end, "only one of")
        raises(function() optim.SGD({ 1, 2 }) end, "parameter 1 is a number, not a tensor")
        raises(function() optim.SGD({}) end, "no parameters")
        raises(function() optim.from_config({ type = "Adagrad" }, model) end, "unknown optimizer Adagrad")
        local k = optim.Adam(model, { learning_rate = 0.02 })
        assert.are.equal(0.02, k:get_lr())
    end)
end)
