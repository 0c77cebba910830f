-- whorl.fit, evaluate and predict: training lowers the loss; Keras 3's
-- progress lines (plain when stdout is not a terminal, redrawn live, compact,
-- silent); each callback; the dataset protocol; and resuming from a
-- checkpoint, in this process and in a fresh one, bit for bit.
local whorl = require "whorl"
local nn = require "whorl.nn"
local optim = require "whorl.optim"
local callbacks = require "whorl.callbacks"
local checkpoint = require "whorl.checkpoint"
local progress = require "whorl.progress"
local autoencoder = require "autoencoder224"
local files = require "helpers.files"
local slurp, weights_equal = files.slurp, files.same_state
local shell = require "helpers.shell"
local check = require "helpers.check"
local raises = check.raises

local tmpdir
local function tmp(name) return tmpdir .. "/" .. name end

setup(function() tmpdir = shell.tmpdir() end)
teardown(function() if tmpdir then shell.remove(tmpdir) end end)

-- A file-like object that keeps what is written.
local function sink()
    local parts = {}
    return {
        write = function(self, ...)
            for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
            return self
        end,
        flush = function() end,
        text = function() return table.concat(parts) end,
    }
end

local function lines(s)
    local out = {}
    for l in s:gmatch("([^\n]*)\n") do out[#out + 1] = l end
    return out
end

local function small_model(seed)
    nn.clear_session()
    return autoencoder{ input_size = 16, filters = { 4, 8 }, seed = seed or 1 }
end

-- With dropout, so resuming must restore the random generator too.
local function dropout_model(seed)
    nn.clear_session()
    return nn.init.with_seed(seed, function()
        return nn.Sequential{ nn.Conv2d(1, 4, 3, { padding = "same", activation = "relu" }),
            nn.Dropout(0.25), nn.Conv2d(4, 1, 3, { padding = "same", activation = "sigmoid" }) }
    end)
end

-- Smooth images (blurred noise), so there is something to learn.
local function images(n, seed)
    whorl.manual_seed(seed)
    local x = whorl.rand({ n, 1, 8, 8 })
    return whorl.no_grad(function() return x:upsample({ size = { 16, 16 }, mode = "bilinear" }) end)
end

local function snapshot(model)
    local out = {}
    for k, t in pairs(model:state_dict()) do out[k] = t:bytes() end
    return out
end

local function matches_snapshot(model, snap)
    for k, t in pairs(model:state_dict()) do
        if t:bytes() ~= snap[k] then return false, k end
    end
    return true
end

-- Keras 3's finished epoch line, without colours.
local NUM = "%-?%d+%.%d%d%d%d"
local BAR_LINE = "^(%s*%d+)/(%d+) ━━━━━━━━━━━━━━━━━━━━ %d+s %d+[mu]?s/step %- loss: " .. NUM

describe("whorl.fit", function()
    it("trains a tiny autoencoder: the loss falls and the history has every epoch", function()
        local m = small_model(1)
        local opt = optim.Adam(m, { lr = 0.01 })
        local x, vx = images(32, 1), images(8, 2)
        local history, model, o = whorl.fit{ model = m, loss = nn.losses.MSE(), optimizer = opt,
            train = { x = x }, valid = { x = vx }, batch_size = 8, epochs = 6, seed = 3,
            metrics = { "mae" }, verbose = 0 }
        assert.are.equal(m, model)
        assert.are.equal(opt, o)
        assert.are.same({ 1, 2, 3, 4, 5, 6 }, history.epoch)
        for _, k in ipairs({ "loss", "val_loss", "mae", "val_mae" }) do
            assert.are.equal(6, #history[k], k)
        end
        assert.is_true(history.loss[6] < 0.5 * history.loss[1],
            string.format("loss %.5f -> %.5f", history.loss[1], history.loss[6]))
        assert.is_true(history.val_loss[6] < 0.5 * history.val_loss[1])
        -- val_loss is the model's loss on the validation data after the epoch
        local loss = whorl.evaluate(m, { x = vx }, { loss = nn.losses.MSE(), batch_size = 8, verbose = 0 })
        assert.is_true(math.abs(loss - history.val_loss[6]) < 1e-7)
        assert.are.equal(24, o.iterations)
    end)

    it("shows the running mean of the loss over the epoch's samples", function()
        local m = small_model(2)
        local seen = {}
        local record = callbacks.Lambda{ on_train_batch_end = function(_, ctx, step, logs)
            seen[#seen + 1] = { logs.loss, logs.size }
        end }
        local history = whorl.fit{ model = m, loss = nn.losses.MSE(), optimizer = optim.SGD(m),
            train = { x = images(10, 3) }, batch_size = 4, epochs = 1, verbose = 0,
            callbacks = { record } }
        assert.are.equal(3, #seen)
        assert.are.same({ 4, 4, 2 }, { seen[1][2], seen[2][2], seen[3][2] })
        local want = (seen[1][1] * 4 + seen[2][1] * 4 + seen[3][1] * 2) / 10
        assert.are.equal(want, history.loss[1])
    end)

    it("prints one plain Keras line per epoch when stdout is not a terminal", function()
        local script = tmp("plain.lua")
        local f = assert(io.open(script, "w"))
        f:write([[
            local whorl = require "whorl"
            local nn = require "whorl.nn"
            local m = require("autoencoder224"){input_size = 16, filters = {4, 8}, seed = 1}
            whorl.manual_seed(1)
            local x = whorl.rand({10, 1, 16, 16})
            whorl.fit{model = m, loss = nn.losses.MSE(), optimizer = require("whorl.optim").RMSprop(m),
                train = {x = x}, valid = {x = x:narrow(1, 1, 4)}, batch_size = 4, epochs = 3,
                verbose = tonumber(arg[1])}
        ]])
        f:close()
        local function run(verbose)
            local p = io.popen(string.format("WHORL_PROGRESS= lua5.4 %s %d", script, verbose))
            local out = p:read("a")
            p:close()
            return out
        end
        local out = run(1)
        assert.falsy(out:find("\r", 1, true))
        assert.falsy(out:find("\27", 1, true))
        local ls = lines(out)
        assert.are.equal(6, #ls, out)
        for e = 1, 3 do
            assert.are.equal(string.format("Epoch %d/3", e), ls[2 * e - 1])
            local line = ls[2 * e]
            local cur, total = line:match(BAR_LINE .. " %- val_loss: " .. NUM .. "$")
            assert.truthy(cur, "not a Keras line: " .. line)
            assert.are.equal("3", cur)
            assert.are.equal("3", total)
        end
        assert.are.equal("", run(0))
    end)

    it("redraws a live line on a terminal: \\r, colours, the ETA, then the finished line", function()
        local out = sink()
        whorl.fit{ model = small_model(3), loss = nn.losses.MSE(), optimizer = optim.SGD(small_model(3)),
            train = { x = images(12, 4) }, batch_size = 4, epochs = 1, output = out, live = true }
        local s = out:text()
        assert.truthy(s:find("\r", 1, true))
        assert.truthy(s:find("\27[32m", 1, true))
        assert.are.equal("\n", s:sub(-1))
        assert.falsy(s:find("Epoch", 1, true)) -- Keras prints no epoch line for a single epoch
        local draws = {}
        for seg in s:gmatch("\r([^\r]*)") do draws[#draws + 1] = (seg:gsub("\27%[[%d;]*m", "")) end
        assert.truthy(draws[1]:match("^1/3 [\226\148\129]+ %d+s %d+[mu]?s/step %- loss: " .. NUM), draws[1])
        assert.truthy(draws[#draws]:match(BAR_LINE .. "%s*\n$"), draws[#draws])
    end)

    it("prints Keras' compact line with verbose = 2 and nothing with verbose = 0", function()
        local m = small_model(4)
        local out = sink()
        whorl.fit{ model = m, loss = nn.losses.MSE(), optimizer = optim.SGD(m), train = { x = images(8, 5) },
            batch_size = 4, epochs = 2, verbose = 2, output = out }
        local ls = lines(out:text())
        assert.are.equal("Epoch 1/2", ls[1])
        assert.truthy(ls[2]:match("^2/2 %- %d+s %- %d+[mu]?s/step %- loss: " .. NUM .. "$"), ls[2])
        local quiet = sink()
        whorl.fit{ model = m, loss = nn.losses.MSE(), optimizer = optim.SGD(m), train = { x = images(8, 5) },
            batch_size = 4, epochs = 2, verbose = 0, output = quiet, live = true }
        assert.are.equal("", quiet:text())
    end)

    it("rejects bad arguments with clear messages", function()
        local m = small_model(5)
        local x = images(6, 6)
        local base = { model = m, loss = nn.losses.MSE(), optimizer = optim.SGD(m), train = { x = x },
            verbose = 0 }
        local function with(k, v)
            local a = {}
            for kk, vv in pairs(base) do a[kk] = vv end
            a[k] = v
            return function() whorl.fit(a) end
        end
        raises(with("epoch", 3), "unknown argument 'epoch'")
        raises(with("batch_size", 0), "batch_size")
        raises(with("train", { x = x, y = images(5, 1) }), "train.y has 5 samples", "train.x has 6")
        raises(with("train", "data"), "train must be")
        raises(with("loss", nil), "loss is required")
        raises(with("metrics", { "accuracy" }), "unknown metric 'accuracy'")
        raises(with("train", { x = whorl.rand({ 6, 3, 16, 16 }) }), "input_layer",
            "expected input of shape (N, 1, 16, 16), got [6, 3, 16, 16]")
        raises(with("callbacks", { callbacks.EarlyStopping{ monitor = "val_loss" } }), "val_loss",
            "valid = ")
        raises(function() whorl.predict({}, x) end, "model must be")
    end)
end)

describe("progress lines", function()
    it("format numbers and times as Keras does", function()
        assert.are.equal("0.0065", progress.format_value(0.0065))
        assert.are.equal("6.5000e-04", progress.format_value(0.00065))
        assert.are.equal("-2.0000", progress.format_value(-2))
        assert.are.equal(" 104ms/step", progress.format_time(0.104))
        assert.are.equal(" 2s/step", progress.format_time(2.4))
        assert.are.equal(" 12us/step", progress.format_time(0.0000123))
    end)

    it("time steps after the first, and the elapsed time in whole seconds", function()
        local now = 0
        local out = sink()
        local bar = progress.new{ target = 17, verbose = 1, out = out, live = false,
            clock = function() return now end }
        now = 2.0; bar:update(1, { { "loss", 0.5 } })
        for i = 2, 17 do now = 2.0 + 0.104 * (i - 1); bar:update(i, { { "loss", 0.0065 } }) end
        bar:update(17, { { "loss", 0.0065 }, { "val_loss", 0.0063 } }, true)
        assert.are.equal("17/17 ━━━━━━━━━━━━━━━━━━━━ 4s 104ms/step - loss: 0.0065 - val_loss: 0.0063\n",
            out:text())
    end)
end)

-- A metric whose value per epoch comes from a script: it drives the
-- monitored value of the callbacks.
local function scripted(values)
    local epoch = 0
    local cb = callbacks.Lambda{ on_epoch_begin = function(_, _, e) epoch = e end }
    return { name = "score", fn = function() return values[epoch] end }, cb
end

local function fit_small(opts)
    local m = opts.model or small_model(opts.seed or 7)
    local args = { model = m, loss = nn.losses.MSE(), optimizer = opts.optimizer or optim.SGD(m, { lr = 0.1 }),
        train = { x = images(8, 8) }, batch_size = 4, epochs = opts.epochs or 3, verbose = 0,
        callbacks = opts.callbacks, metrics = opts.metrics, valid = opts.valid, output = opts.output,
        seed = 1 }
    local history = whorl.fit(args)
    return history, m, args.optimizer
end

describe("callbacks", function()
    it("ModelCheckpoint writes a complete checkpoint every epoch", function()
        local history, m = fit_small{ callbacks = { callbacks.ModelCheckpoint(tmp("ep_{epoch:02d}.safetensors")) } }
        for e = 1, 3 do
            local back, info = whorl.load(tmp(string.format("ep_%02d.safetensors", e)))
            assert.are.equal(e, info.epoch)
            assert.are.equal(e, #info.history.loss)
            assert.are.equal(history.loss[e], info.history.loss[e])
            assert.are.equal("SGD", info.optimizer.kind)
            assert.are.equal("MSE", info.loss.type)
            if e == 3 then assert.is_true(weights_equal(m, back)) end
        end
        -- weights only: no architecture, no optimizer
        local _, m2 = fit_small{ callbacks = { callbacks.ModelCheckpoint(tmp("w.safetensors"), { weights_only = true }) } }
        raises(function() whorl.load(tmp("w.safetensors")) end, "weights only")
        local back, info = whorl.load(tmp("w.safetensors"), { model = small_model(1) })
        assert.is_true(weights_equal(m2, back))
        assert.is_nil(info.optimizer)
    end)

    it("ModelCheckpoint with save_best_only saves when the monitored value improves", function()
        local metric, driver = scripted({ 3, 1, 2, 0.5 })
        local saved_epochs = {}
        local path = tmp("best.safetensors")
        local after = callbacks.Lambda{ on_epoch_end = function()
            local _, info = whorl.load(path)
            saved_epochs[#saved_epochs + 1] = info.epoch
        end }
        fit_small{ epochs = 4, metrics = { metric }, callbacks = { driver,
            callbacks.ModelCheckpoint(path, { monitor = "score", save_best_only = true }), after } }
        assert.are.same({ 1, 2, 2, 4 }, saved_epochs)
        saved_epochs = {}
        os.remove(path)
        fit_small{ epochs = 4, metrics = { metric }, callbacks = { driver,
            callbacks.ModelCheckpoint(path, { monitor = "score", mode = "max", save_best_only = true }),
            after } }
        assert.are.same({ 1, 1, 1, 1 }, saved_epochs)
    end)

    it("EarlyStopping stops after `patience` epochs without improvement and restores the best", function()
        local metric, driver = scripted({ 5, 4, 4.5, 4.6, 4.7, 4.8 })
        local snaps = {}
        local keep = callbacks.Lambda{ on_epoch_end = function(_, ctx, e) snaps[e] = snapshot(ctx.model) end }
        local out = sink()
        local history, m = fit_small{ epochs = 6, metrics = { metric }, output = out, callbacks = { driver, keep,
            callbacks.EarlyStopping{ monitor = "score", patience = 2, restore_best_weights = true, verbose = 1 } } }
        assert.are.same({ 1, 2, 3, 4 }, history.epoch)
        assert.is_true(matches_snapshot(m, snaps[2]))
        assert.is_false(matches_snapshot(m, snaps[4]))
        assert.are.same({ "Epoch 4: early stopping", "Restoring model weights from the end of the best epoch: 2." },
            lines(out:text()))
        -- without restoring, the last epoch's weights stay
        history, m = fit_small{ epochs = 6, metrics = { metric }, callbacks = { driver, keep,
            callbacks.EarlyStopping{ monitor = "score", patience = 2 } } }
        assert.are.equal(4, #history.epoch)
        assert.is_true(matches_snapshot(m, snaps[4]))
    end)

    it("CSVLogger writes a row per epoch that reads back as the history", function()
        local path = tmp("log.csv")
        local history, m, opt = fit_small{ valid = { x = images(4, 9) }, callbacks = { callbacks.CSVLogger(path) } }
        local ls = lines(slurp(path))
        assert.are.equal("epoch,loss,val_loss", ls[1])
        assert.are.equal(4, #ls)
        for e = 1, 3 do
            local ep, loss, val = ls[e + 1]:match("^(%d+),([^,]+),([^,]+)$")
            assert.are.equal(e, tonumber(ep))
            assert.are.equal(history.loss[e], tonumber(loss))
            assert.are.equal(history.val_loss[e], tonumber(val))
        end
        whorl.fit{ model = m, loss = nn.losses.MSE(), optimizer = opt, train = { x = images(8, 8) },
            valid = { x = images(4, 9) }, batch_size = 4, epochs = 5, initial_epoch = 3, verbose = 0,
            callbacks = { callbacks.CSVLogger(path, { append = true }) } }
        ls = lines(slurp(path))
        assert.are.equal(6, #ls)
        assert.truthy(ls[6]:match("^5,"))
    end)

    it("NaNGuard stops at the step whose loss is not finite and leaves the last checkpoint as it was", function()
        for _, bad in ipairs({ 0 / 0, math.huge }) do
            local steps = 0
            local mse = nn.losses.MSE()
            local function loss(pred, target)
                steps = steps + 1
                local l = mse(pred, target)
                if steps == 6 then return l * bad end -- epoch 3, step 2 of 2
                return l
            end
            local path = tmp("last.safetensors")
            local kept, after_good_step
            local watch = callbacks.Lambda{
                on_epoch_end = function(_, _, e) if e == 2 then kept = slurp(path) end end,
                on_train_batch_end = function(_, ctx) after_good_step = snapshot(ctx.model) end,
            }
            local m = small_model(8)
            local err = raises(function()
                whorl.fit{ model = m, loss = loss, optimizer = optim.SGD(m, { lr = 0.1 }),
                    train = { x = images(8, 8) }, batch_size = 4, epochs = 5, verbose = 0,
                    callbacks = { callbacks.ModelCheckpoint(path), watch, callbacks.NaNGuard() } }
            end, "epoch 3, step 2/2", bad ~= bad and "NaN" or "inf", "last.safetensors", "(epoch 2)")
            assert.are.equal(kept, slurp(path), err)
            assert.is_true(matches_snapshot(m, after_good_step)) -- the bad step made no update
        end
        -- raise = false: fit returns, the reason in the history
        local m = small_model(8)
        local out = sink()
        local history = whorl.fit{ model = m, loss = function(p, t) return whorl.mse_loss(p, t) * (0 / 0) end,
            optimizer = optim.SGD(m), train = { x = images(8, 8) }, batch_size = 4, epochs = 3,
            verbose = 0, output = out, callbacks = { callbacks.NaNGuard{ raise = false } } }
        assert.are.equal(0, #history.epoch)
        assert.truthy(history.stop_reason:find("epoch 1, step 1/2", 1, true))
        assert.truthy(out:text():find("no checkpoint was written", 1, true))
    end)

    it("ReduceLROnPlateau lowers the learning rate after `patience` flat epochs", function()
        local metric, driver = scripted({ 1, 1, 1, 1 })
        local m = small_model(9)
        local opt = optim.SGD(m, { lr = 0.01 })
        local history = fit_small{ model = m, optimizer = opt, epochs = 4, metrics = { metric },
            callbacks = { driver, callbacks.ReduceLROnPlateau{ monitor = "score", patience = 1, factor = 0.5 } } }
        assert.are.same({ 0.01, 0.01, 0.005, 0.0025 }, history.learning_rate)
        assert.are.equal(0.00125, opt.lr)
    end)

    it("LearningRateScheduler sets the rate at the start of each epoch", function()
        local m = small_model(10)
        local opt = optim.SGD(m, { lr = 1 })
        local history = fit_small{ model = m, optimizer = opt, epochs = 3,
            callbacks = { callbacks.LearningRateScheduler(function(epoch, lr) return lr / (2 * epoch) end) } }
        assert.are.same({ 0.5, 0.125, 0.125 / 6 }, history.learning_rate)
        assert.are.equal(0.125 / 6, opt.lr)
        raises(function() callbacks.LearningRateScheduler(3) end, "function")
        raises(function() callbacks.ModelCheckpoint(tmp("x"), { every = 2 }) end, "unknown option 'every'")
    end)
end)

describe("data", function()
    -- A minimal object following fit's dataset protocol: unpaired images,
    -- a shuffled order from (seed, epoch), a to-be-closed loader per epoch.
    local function dataset(x, with_size)
        local ds = { closed = 0, orders = {} }
        function ds:batches(n, opts)
            local total = x:size()[1]
            local order = {}
            for i = 1, total do order[i] = i end
            if opts.shuffle then
                local s = opts.seed * 31 + opts.epoch
                for i = total, 2, -1 do
                    s = (s * 1103515245 + 12345) % 2147483648
                    local j = s % i + 1
                    order[i], order[j] = order[j], order[i]
                end
            end
            self.orders[#self.orders + 1] = table.concat(order, ",")
            local at = 0
            local closer = setmetatable({}, { __close = function() self.closed = self.closed + 1 end })
            return function()
                if at >= total then return nil end
                local parts = {}
                for i = at + 1, math.min(at + n, total) do parts[#parts + 1] = x:narrow(1, order[i], 1) end
                at = at + #parts
                return whorl.cat(parts, 1), nil, { "indices are ignored" }
            end, nil, nil, closer
        end
        if with_size then setmetatable(ds, { __len = function() return x:size()[1] end }) end
        return ds
    end

    it("takes any object with batches(batch_size, {shuffle, seed, epoch})", function()
        local x = images(10, 11)
        local ds = dataset(x, true)
        local m = small_model(11)
        local out = sink()
        local history = whorl.fit{ model = m, loss = nn.losses.MSE(), optimizer = optim.Adam(m, { lr = 0.01 }),
            train = ds, batch_size = 4, epochs = 3, seed = 5, output = out, verbose = 2 }
        assert.are.equal(3, #history.loss)
        assert.are.equal(3, ds.closed)
        assert.are_not.equal(ds.orders[1], ds.orders[2])
        assert.truthy(lines(out:text())[2]:match("^3/3 %- "))
        -- no size: Keras' Unknown total
        local unsized = sink()
        whorl.fit{ model = m, loss = nn.losses.MSE(), optimizer = optim.SGD(m), train = dataset(x, false),
            batch_size = 4, epochs = 1, output = unsized }
        assert.truthy(unsized:text():match("^%s+3/Unknown %d+s"), unsized:text())
    end)

    it("takes whorl.data datasets as they are, and resumes on them bit for bit", function()
        local dir = tmp("images")
        assert(os.execute("mkdir -p '" .. dir .. "'"))
        for i = 1, 7 do whorl.image.write(string.format("%s/%02d.png", dir, i), images(1, 30 + i)[1][1]) end
        local ds = whorl.data.folder(dir, { size = 16 })
        local function train(epochs, ck, resume)
            local m = small_model(31)
            if resume then
                local _, got = whorl.fit{ resume = resume, train = ds, batch_size = 3, epochs = epochs,
                    verbose = 0 }
                return got
            end
            whorl.fit{ model = m, loss = nn.losses.MSE(), optimizer = optim.Adam(m, { lr = 0.01 }),
                train = ds, valid = ds, batch_size = 3, epochs = epochs, seed = 4, verbose = 0,
                callbacks = ck and { callbacks.ModelCheckpoint(ck) } or nil }
            return m
        end
        local full = train(2)
        train(1, tmp("data_half.safetensors"))
        assert.is_true(weights_equal(full, train(2, nil, tmp("data_half.safetensors"))))
    end)

    it("shuffles tensors in an order set by (seed, epoch) alone", function()
        local x = images(9, 12)
        local function first_batches(seed, shuffle)
            local got = {}
            local m = small_model(12)
            local grab = callbacks.Lambda{ on_epoch_begin = function() got[#got + 1] = false end }
            local function loss(pred, target)
                if not got[#got] then got[#got] = target:bytes() end
                return whorl.mse_loss(pred, target)
            end
            whorl.fit{ model = m, loss = loss, optimizer = optim.SGD(m), train = { x = x }, batch_size = 3,
                epochs = 2, seed = seed, shuffle = shuffle, verbose = 0, callbacks = { grab } }
            return got
        end
        local a, b = first_batches(1), first_batches(1)
        assert.are.same(a, b)
        assert.are_not.equal(a[1], a[2])
        assert.are_not.same(a, first_batches(2))
        local plain = first_batches(1, false)
        assert.are.equal(x:narrow(1, 1, 3):bytes(), plain[1])
        assert.are.equal(plain[1], plain[2])
    end)

    it("passes y and per-pixel weights to the loss", function()
        local x, y = images(6, 13), images(6, 14)
        local w = whorl.ones({ 6, 1, 16, 16 })
        local m = small_model(13)
        local calls = 0
        local function loss(pred, target, weight)
            calls = calls + 1
            assert.is_true(whorl.is_tensor(weight))
            assert.are.same(pred:size(), weight:size())
            return whorl.mse_loss(pred, target, { weight = weight })
        end
        whorl.fit{ model = m, loss = loss, optimizer = optim.SGD(m), train = { x = x, y = y, weight = w },
            batch_size = 4, epochs = 1, verbose = 0 }
        assert.are.equal(2, calls)
    end)
end)

describe("whorl.evaluate and whorl.predict", function()
    it("predict batches in eval mode under no_grad and gives model(x)", function()
        local m = dropout_model(14)
        local x = images(10, 15)
        m:train()
        local y = whorl.predict(m, x, { batch_size = 4 })
        assert.is_true(m.training)
        assert.is_false(y.requires_grad)
        m:eval()
        local want = whorl.no_grad(function() return m(x) end)
        assert.are.same({ 10, 1, 16, 16 }, y:size())
        assert.is_true((y - want):abs():max():item() < 1e-6)
    end)

    it("evaluate gives the sample-weighted mean loss and prints Keras' line", function()
        local m = small_model(15)
        local x = images(10, 16)
        local out = sink()
        local loss, logs = whorl.evaluate(m, { x = x }, { loss = nn.losses.MSE(), batch_size = 4,
            metrics = { "mse" }, output = out })
        local want = whorl.no_grad(function() return whorl.mse_loss(m(x), x):item() end)
        assert.is_true(math.abs(loss - want) < 1e-7)
        assert.is_true(math.abs(logs.mse - want) < 1e-7)
        assert.truthy(out:text():match(BAR_LINE .. " %- mse: " .. NUM .. "\n$"), out:text())
    end)
end)

describe("resuming", function()
    local function run(x, epochs, ck_path)
        local m = dropout_model(21)
        whorl.manual_seed(77)
        return whorl.fit{ model = m, loss = nn.losses.MSE(), optimizer = optim.RMSprop(m), train = { x = x },
            batch_size = 3, epochs = epochs, verbose = 0,
            callbacks = ck_path and { callbacks.ModelCheckpoint(ck_path) } or nil }, m
    end

    it("gives after 2 + 2 epochs the weights of 4 uninterrupted ones, bit for bit", function()
        local x = images(10, 20)
        local full_history, full = run(x, 4)
        run(x, 2, tmp("half.safetensors"))
        whorl.manual_seed(12345) -- whatever happened in between
        local history, resumed, opt = whorl.fit{ resume = tmp("half.safetensors"), train = { x = x },
            batch_size = 3, epochs = 4, verbose = 0 }
        assert.is_true(weights_equal(full, resumed))
        assert.are.same(full_history.loss, history.loss)
        assert.are.same({ 1, 2, 3, 4 }, history.epoch)
        assert.are.equal(16, opt.iterations)
        -- a model given to resume receives the checkpoint's state
        local fresh = dropout_model(99)
        local _, same = whorl.fit{ resume = tmp("half.safetensors"), model = fresh, train = { x = x },
            batch_size = 3, epochs = 4, verbose = 0 }
        assert.are.equal(fresh, same)
        assert.is_true(weights_equal(full, fresh))
        raises(function()
            whorl.fit{ resume = tmp("half.safetensors"), model = small_model(1), train = { x = x }, verbose = 0 }
        end, "resume", "half.safetensors", "do not fit")
    end)

    it("continues in a fresh interpreter the same way", function()
        local x = images(10, 22)
        local _, full = run(x, 4)
        run(x, 2, tmp("p_half.safetensors"))
        checkpoint.write(tmp("p_data.safetensors"), { { "x", x } })
        local f = assert(io.open(tmp("resume.lua"), "w"))
        f:write([[
            local whorl = require "whorl"
            local x = require("whorl.checkpoint").read(arg[2]).tensors.x
            local _, m, opt = whorl.fit{resume = arg[1], train = {x = x}, batch_size = 3, epochs = 4, verbose = 0}
            whorl.save(m, arg[3], {optimizer = opt})
        ]])
        f:close()
        local ok = os.execute(string.format("lua5.4 %s %s %s %s", tmp("resume.lua"), tmp("p_half.safetensors"),
            tmp("p_data.safetensors"), tmp("p_done.safetensors")))
        assert.is_true(ok)
        local done = whorl.load(tmp("p_done.safetensors"))
        assert.is_true(weights_equal(full, done))
    end)

    it("rests on convolution gradients that are the same on every run", function()
        whorl.manual_seed(23)
        local x = whorl.rand({ 4, 8, 12, 12 })
        local w = whorl.randn({ 8, 8, 3, 3 }) * 0.1
        w.requires_grad = true
        local first
        for _ = 1, 30 do
            w.grad = nil
            whorl.conv2d(x, w, nil, { padding = "same", activation = "relu" }):sum():backward()
            local h = w.grad:bytes()
            first = first or h
            assert.are.equal(first, h)
        end
    end)
end)
