-- Keras' fit, evaluate and predict for whorl models.
--
--   local history = whorl.fit{model = m, loss = nn.losses.MSE(), optimizer = optim.RMSprop(m),
--       train = {x = x, y = y}, valid = {x = vx, y = vy}, batch_size = 128, epochs = 200,
--       callbacks = {callbacks.ModelCheckpoint("ck/last.safetensors")}}
--   history.loss[3], history.val_loss[3]            -- epoch means, 1-based epochs
--   local history, model, opt = whorl.fit{resume = "ck/last.safetensors", train = ..., epochs = 400}
--   local loss, logs = whorl.evaluate(m, {x = vx, y = vy}, {loss = nn.losses.MSE()})
--   local y = whorl.predict(m, x, {batch_size = 32})
--
-- fit's fields:
--   model, loss, optimizer  a module; a whorl.losses object or function(pred,
--                 target[, weight]) -> scalar tensor; a whorl.optim optimizer
--   train, valid  data (below); valid is optional
--   batch_size 32, epochs 1 (the last epoch number, as in Keras), initial_epoch 0
--   shuffle true  a new order each epoch, a function of (seed, epoch) only
--   seed          the shuffle seed; nil: drawn from the global generator's
--                 state (without advancing it) and kept in checkpoints
--   metrics       extra per-epoch means: names ("mae", "mse", "bce", "ssim",
--                 "psnr"), whorl.losses objects, or {name = ..., fn = function(pred, target)}
--   callbacks     a list (whorl/callbacks.lua)
--   verbose 1     Keras' progress lines (whorl/progress.lua); 2 one line per
--                 epoch; 0 nothing.  output (io.stdout) and live (redraw in
--                 place; default: output is a terminal) for redirection
--   resume        a checkpoint (ModelCheckpoint's or whorl.save's): model,
--                 optimizer and loss come from it unless given (given ones
--                 receive its state), training goes on after its epoch with
--                 its history, RNG state, shuffle seed and callback states,
--                 so 2 + 2 epochs give the weights of 4, bit for bit
-- Returns history, model, optimizer.  history: epoch = {1, 2, ...} and
-- one list per logged value (loss, val_loss, metrics, learning_rate when a
-- learning-rate callback runs); stop_reason when NaNGuard stopped it.
-- The loss shown and recorded is the mean over the epoch's samples so far
-- (Keras' running mean, batches weighted by their size); val_loss is
-- computed after the epoch with the model in eval mode under no_grad.
--
-- Data: {x = tensor, y = tensor, weight = tensor} with samples along the
-- first dimension (y omitted: the target is x, an autoencoder's identity
-- task; weight: per-sample or per-pixel loss weights, passed as the loss'
-- third argument), or any dataset object following this protocol:
--   ds:batches(batch_size, {shuffle = bool, seed = int, epoch = int})
--       an iterator for a generic for, giving x, y[, weight] per batch (y nil:
--       the target is x; a third value that is not a tensor is ignored, so
--       whorl.data's item indices pass through); a 4th, to-be-closed value
--       is closed when the loop ends; the same (seed, epoch) must give the
--       same order for resume to be exact
--   #ds or ds:size()  the number of samples (optional: without it the bar
--       shows Keras' "Unknown" total)
-- whorl.data datasets follow it as they are.
local whorl = require "whorl"
local nn = require "whorl.nn"
local losses = require "whorl.losses"
local progress = require "whorl.progress"
local checkpoint = require "whorl.checkpoint"

local M = {}

local core_data = require("whorl.core")._data

local function fail(who, fmt, ...) error(who .. ": " .. string.format(fmt, ...), 0) end

-- ---- data ---------------------------------------------------------------------------------

local function first_dim(t) return t:dim() > 0 and t:size()[1] or nil end

-- Rows `order[from..to]` of t as one tensor.
local function gather(t, order, from, to)
    local parts = {}
    for i = from, to do parts[#parts + 1] = t:narrow(1, order[i], 1) end
    return whorl.cat(parts, 1)
end

local ArrayData = {}
ArrayData.__index = ArrayData

local function array_data(who, what, spec)
    local x, y, w = spec.x, spec.y, spec.weight
    for k in pairs(spec) do
        if k ~= "x" and k ~= "y" and k ~= "weight" then
            fail(who, "%s has an unknown field '%s' (expected x, y, weight)", what, tostring(k))
        end
    end
    if not whorl.is_tensor(x) then fail(who, "%s.x must be a tensor, got %s", what, type(x)) end
    local n = first_dim(x)
    if not n or n == 0 then fail(who, "%s.x has no samples (shape [%s])", what, table.concat(x:size(), ", ")) end
    for name, t in pairs({ y = y, weight = w }) do
        if not whorl.is_tensor(t) then
            fail(who, "%s.%s must be a tensor, got %s", what, name, type(t))
        end
        if first_dim(t) ~= n then
            fail(who, "%s.%s has %s samples (shape [%s]) but %s.x has %d", what, name,
                tostring(first_dim(t)), table.concat(t:size(), ", "), what, n)
        end
    end
    return setmetatable({ x = x, y = y, w = w, n = n }, ArrayData)
end

function ArrayData:size() return self.n end

function ArrayData:batches(batch_size, opts)
    local n, order = self.n, nil
    if opts.shuffle then order = core_data.permutation(n, core_data.seed_mix(opts.seed, opts.epoch)) end
    local at = 0
    local x, y, w = self.x, self.y, self.w
    return function()
        if at >= n then return nil end
        local b = math.min(batch_size, n - at)
        local bx, by, bw
        if order then
            bx = gather(x, order, at + 1, at + b)
            by = y and gather(y, order, at + 1, at + b)
            bw = w and gather(w, order, at + 1, at + b)
        else
            bx, by, bw = x:narrow(1, at + 1, b), y and y:narrow(1, at + 1, b), w and w:narrow(1, at + 1, b)
        end
        at = at + b
        return bx, by, bw
    end
end

-- A dataset object as fit sees it.
local Wrapped = {}
Wrapped.__index = Wrapped

function Wrapped:size() return self.n end
function Wrapped:batches(batch_size, opts)
    return self.ds:batches(batch_size, { shuffle = opts.shuffle, seed = opts.seed, epoch = opts.epoch })
end

local function as_data(who, what, d)
    if whorl.is_tensor(d) then return array_data(who, what, { x = d }) end
    if type(d) ~= "table" then
        fail(who, "%s must be {x = tensor, y = tensor} or a dataset with a batches method, got %s",
            what, type(d))
    end
    if type(d.batches) == "function" then
        local n
        local mt = getmetatable(d)
        if mt and mt.__len then n = #d elseif type(d.size) == "function" then n = d:size() end
        if n ~= nil and (math.type(n) ~= "integer" and not (type(n) == "number" and n == math.floor(n))) then
            fail(who, "%s's size is %s, not a count of samples", what, tostring(n))
        end
        return setmetatable({ ds = d, n = n and math.tointeger(n) }, Wrapped)
    end
    if d.x ~= nil then return array_data(who, what, d) end
    fail(who, "%s must be {x = tensor, y = tensor} or a dataset with a batches method", what)
end

-- Runs fn(x, y, w) on each batch of one pass until it returns true.  The
-- iterator's to-be-closed value (whorl.data's loader) is closed here by
-- hand: Debian's Lua 5.4.4 fails to close it ("attempt to call a nil value
-- (metamethod 'close')") when a generic for inside another loop is left by
-- break.
local function each_batch(data, batch_size, opts, fn)
    local f, s, c, closing = data:batches(batch_size, opts)
    local ok, err = pcall(function()
        while true do
            local x, y, w = f(s, c)
            if x == nil then return end
            c = x
            if fn(x, y, w) then return end
        end
    end)
    local mt = closing ~= nil and getmetatable(closing)
    if mt and mt.__close then mt.__close(closing, (not ok) and err or nil) end
    if not ok then error(err, 0) end
end

local function steps_of(data, batch_size)
    local n = data:size()
    return n and (n + batch_size - 1) // batch_size or nil
end

-- ---- metrics ------------------------------------------------------------------------------

local function scalar(v)
    if whorl.is_tensor(v) then return v:item() end
    return v
end

local NAMED = {
    mae = function(p, t) return whorl.l1_loss(p, t) end,
    l1 = function(p, t) return whorl.l1_loss(p, t) end,
    mse = function(p, t) return whorl.mse_loss(p, t) end,
    bce = function(p, t) return whorl.bce_loss(p, t) end,
    ssim = function(p, t) return losses.ssim(p, t) end,
    -- peak signal-to-noise ratio for images in [0, 1]
    psnr = function(p, t) return -10 * math.log(scalar(whorl.mse_loss(p, t)), 10) end,
}

local function resolve_metrics(who, list)
    local out = {}
    for i, m in ipairs(list or {}) do
        if type(m) == "string" then
            local fn = NAMED[m]
            if not fn then
                local names = {}
                for k in pairs(NAMED) do names[#names + 1] = k end
                table.sort(names)
                fail(who, "unknown metric '%s' (known: %s; or {name = ..., fn = function(pred, " ..
                    "target) ... end})", m, table.concat(names, ", "))
            end
            out[i] = { name = m, fn = fn }
        elseif losses.is_loss(m) then
            out[i] = { name = m.type:lower(), fn = function(p, t) return m(p, t) end }
        elseif type(m) == "table" and type(m.name) == "string" and type(m.fn) == "function" then
            out[i] = { name = m.name, fn = m.fn }
        else
            fail(who, "metric %d must be a name, a whorl.losses object or {name = ..., fn = ...}", i)
        end
        if out[i].name == "loss" or out[i].name:sub(1, 4) == "val_" then
            fail(who, "metric name '%s' is taken by the loss", out[i].name)
        end
    end
    return out
end

-- Running means over an epoch, weighted by batch sizes; keeps the order
-- the values were first seen (Keras' progress order).
local Means = {}
Means.__index = Means

local function means() return setmetatable({ order = {}, sums = {}, count = 0 }, Means) end

function Means:add(name, value, n)
    if self.sums[name] == nil then
        self.order[#self.order + 1] = name
        self.sums[name] = 0
    end
    self.sums[name] = self.sums[name] + value * n
end

function Means:values(prefix)
    local out = {}
    for i, k in ipairs(self.order) do out[i] = { (prefix or "") .. k, self.sums[k] / self.count } end
    return out
end

local function is_finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

local function batch_size_of(who, x)
    local n = first_dim(x)
    if not n then fail(who, "a batch's x is a 0-d tensor; batches need a first (sample) dimension") end
    return n
end

-- ---- evaluation and prediction -------------------------------------------------------------

local function check_model(who, model)
    if not nn.is_module(model) then fail(who, "model must be a whorl.nn module, got %s", type(model)) end
end

local function check_loss(who, loss)
    local callable = type(loss) == "function" or losses.is_loss(loss)
    if not callable then fail(who, "loss must be a whorl.losses object or a function, got %s", type(loss)) end
end

local function check_batch_size(who, b)
    if math.type(b) ~= "integer" or b < 1 then
        fail(who, "batch_size must be a positive integer, got %s", tostring(b))
    end
end

-- Runs model over data under no_grad in eval mode; returns the Means.
local function run_eval(model, loss_fn, metrics, data, batch_size, bar)
    local was_training = model.training
    model:eval()
    local ok, res = pcall(whorl.no_grad, function()
        local m, step = means(), 0
        each_batch(data, batch_size, { shuffle = false, seed = 0, epoch = 1 }, function(x, y, w)
            step = step + 1
            y = y or x
            if not whorl.is_tensor(w) then w = nil end
            local n = batch_size_of("evaluate", x)
            local pred = model(x)
            m.count = m.count + n
            m:add("loss", scalar(loss_fn(pred, y, w)), n)
            for _, mt in ipairs(metrics) do m:add(mt.name, scalar(mt.fn(pred, y)), n) end
            if bar then bar:update(step, m:values(), false) end
        end)
        m.steps = step
        return m
    end)
    model:train(was_training)
    if not ok then error(res, 0) end
    return res
end

-- whorl.evaluate(model, data, {loss, batch_size = 32, metrics, verbose = 1,
-- output, live}) -> loss, logs (loss and metrics, as numbers).
function M.evaluate(model, data, opts)
    local who = "whorl.evaluate"
    opts = opts or {}
    check_model(who, model)
    check_loss(who, opts.loss)
    local batch_size = opts.batch_size or 32
    check_batch_size(who, batch_size)
    local d = as_data(who, "data", data)
    local metrics = resolve_metrics(who, opts.metrics)
    local verbose = opts.verbose == nil and 1 or opts.verbose
    local bar = verbose > 0 and progress.new{ target = steps_of(d, batch_size), verbose = verbose,
        out = opts.output, live = opts.live } or nil
    local m = run_eval(model, opts.loss, metrics, d, batch_size, bar)
    if m.count == 0 then fail(who, "the data gave no batches") end
    local values = m:values()
    if bar then bar:update(m.steps, values, true) end
    local logs = {}
    for _, kv in ipairs(values) do logs[kv[1]] = kv[2] end
    return logs.loss, logs
end

-- whorl.predict(model, x, {batch_size = 32}) -> the outputs of every
-- batch, concatenated along the first dimension.  x: a tensor or data as
-- fit takes it (targets are ignored).  Eval mode and no_grad; the model's
-- mode is restored afterwards.
function M.predict(model, x, opts)
    local who = "whorl.predict"
    opts = opts or {}
    check_model(who, model)
    local batch_size = opts.batch_size or 32
    check_batch_size(who, batch_size)
    local d = as_data(who, "x", x)
    local was_training = model.training
    model:eval()
    local ok, res = pcall(whorl.no_grad, function()
        local outs = {}
        each_batch(d, batch_size, { shuffle = false, seed = 0, epoch = 1 }, function(bx)
            local y = model(bx)
            if not whorl.is_tensor(y) then fail(who, "the model returned a %s, not a tensor", type(y)) end
            outs[#outs + 1] = y
        end)
        if #outs == 0 then fail(who, "the data gave no batches") end
        if #outs == 1 then return outs[1] end
        return whorl.cat(outs, 1)
    end)
    model:train(was_training)
    if not ok then error(res, 0) end
    return res
end

-- ---- fit ------------------------------------------------------------------------------------

local FIT_KEYS = { "model", "loss", "optimizer", "train", "valid", "batch_size", "epochs",
    "shuffle", "seed", "callbacks", "verbose", "initial_epoch", "resume", "metrics", "output",
    "live" }

local Ctx = {}
Ctx.__index = Ctx

function Ctx:print(msg)
    self.output:write(msg, "\n")
    self.output:flush()
end

-- A complete checkpoint of the state after the current epoch (or the
-- weights alone).
function Ctx:save(path, opts)
    opts = opts or {}
    if opts.weights_only then
        return checkpoint.save(self.model, path, { weights_only = true, epoch = self.epoch, rng = false })
    end
    local states = {}
    for i, cb in ipairs(self.callbacks) do
        if type(cb.state_dict) == "function" then
            states[string.format("%d:%s", i, tostring(cb.name or "callback"))] = cb:state_dict()
        end
    end
    checkpoint.save(self.model, path, {
        optimizer = self.optimizer,
        epoch = self.epoch,
        history = self.history,
        loss = losses.is_loss(self.loss) and self.loss or nil,
        trainer = { seed = self.seed, callbacks = states },
    })
end

local function call(ctx, hook, ...)
    for _, cb in ipairs(ctx.callbacks) do
        local f = cb[hook]
        if f then f(cb, ctx, ...) end
    end
end

local function check_fit_args(who, args)
    if type(args) ~= "table" then fail(who, "expected a table of named arguments") end
    local known = {}
    for _, k in ipairs(FIT_KEYS) do known[k] = true end
    for k in pairs(args) do
        if not known[k] then
            fail(who, "unknown argument '%s' (expected %s)", tostring(k), table.concat(FIT_KEYS, ", "))
        end
    end
end

-- The model, optimizer, loss and starting point, from the arguments and
-- the checkpoint to resume from.
local function setup(who, args)
    local s = { model = args.model, optimizer = args.optimizer, loss = args.loss,
        initial_epoch = args.initial_epoch or 0, history = { epoch = {} }, seed = args.seed }
    if args.resume then
        if type(args.resume) ~= "string" then fail(who, "resume must be a checkpoint path") end
        if args.initial_epoch then fail(who, "give resume or initial_epoch, not both") end
        if s.model ~= nil then check_model(who, s.model) end
        local ok, model, info = pcall(checkpoint.load, args.resume,
            { model = s.model, optimizer = s.optimizer, restore_rng = false })
        if not ok then fail(who, "resume: %s", tostring(model)) end
        if not info.optimizer then
            fail(who, "resume: '%s' holds no optimizer state, which resuming needs", args.resume)
        end
        if info.epoch == nil then fail(who, "resume: '%s' records no epoch", args.resume) end
        s.model, s.optimizer = model, info.optimizer
        s.loss = s.loss or info.loss
        s.initial_epoch = info.epoch
        if type(info.history) == "table" then s.history = info.history end
        s.history.epoch = s.history.epoch or {}
        if info.rng then whorl.set_rng_state(info.rng) end
        local t = info.trainer or {}
        if s.seed == nil then s.seed = t.seed end
        s.callback_states = t.callbacks
    end
    check_model(who, s.model)
    if s.loss == nil then fail(who, "loss is required") end
    check_loss(who, s.loss)
    if type(s.optimizer) ~= "table" or type(s.optimizer.step) ~= "function" then
        fail(who, "optimizer must be a whorl.optim optimizer, got %s", type(s.optimizer))
    end
    if math.type(s.initial_epoch) ~= "integer" and not (type(s.initial_epoch) == "number"
        and s.initial_epoch == math.floor(s.initial_epoch)) or s.initial_epoch < 0 then
        fail(who, "initial_epoch must be an integer >= 0")
    end
    s.initial_epoch = math.tointeger(s.initial_epoch)
    if s.seed == nil then
        -- Not a draw: the generator's state is hashed, so dropout and the
        -- like see the same stream whether or not fit picked a seed.
        s.seed = whorl.hash64(whorl.get_rng_state()) & 0x7fffffff
    elseif math.type(s.seed) ~= "integer" then
        if type(s.seed) == "number" and s.seed == math.floor(s.seed) then
            s.seed = math.tointeger(s.seed)
        else
            fail(who, "seed must be an integer, got %s", tostring(s.seed))
        end
    end
    return s
end

local function append_history(history, epoch, logs)
    local n = #history.epoch + 1
    history.epoch[n] = epoch
    for k, v in pairs(logs) do
        history[k] = history[k] or {}
        history[k][n] = v
    end
end

function M.fit(args)
    local who = "whorl.fit"
    check_fit_args(who, args)
    local s = setup(who, args)
    local model, opt, loss_fn = s.model, s.optimizer, s.loss
    local batch_size = args.batch_size or 32
    check_batch_size(who, batch_size)
    local epochs = args.epochs or 1
    if math.type(epochs) ~= "integer" or epochs < 1 then
        fail(who, "epochs must be a positive integer, got %s", tostring(epochs))
    end
    if args.train == nil then fail(who, "train data is required") end
    local train = as_data(who, "train", args.train)
    local valid = args.valid ~= nil and as_data(who, "valid", args.valid) or nil
    local metrics = resolve_metrics(who, args.metrics)
    local verbose = args.verbose == nil and 1 or args.verbose
    if verbose ~= 0 and verbose ~= 1 and verbose ~= 2 then fail(who, "verbose must be 0, 1 or 2") end
    local shuffle = args.shuffle ~= false
    local cbs = args.callbacks or {}
    if type(cbs) ~= "table" then fail(who, "callbacks must be a list") end
    for i, cb in ipairs(cbs) do
        if type(cb) ~= "table" then fail(who, "callback %d is a %s, not a callback object", i, type(cb)) end
    end
    local output = args.output or io.stdout
    local steps = steps_of(train, batch_size)
    local logs_lr = false
    for _, cb in ipairs(cbs) do logs_lr = logs_lr or cb.logs_lr == true end

    local ctx = setmetatable({ model = model, optimizer = opt, loss = loss_fn, history = s.history,
        epochs = epochs, steps = steps, batch_size = batch_size, callbacks = cbs,
        has_validation = valid ~= nil, stop_training = false, seed = s.seed, output = output,
        verbose = verbose }, Ctx)

    call(ctx, "on_train_begin")
    if s.callback_states then
        for i, cb in ipairs(cbs) do
            local st = s.callback_states[string.format("%d:%s", i, tostring(cb.name or "callback"))]
            if st ~= nil and type(cb.load_state_dict) == "function" then cb:load_state_dict(st) end
        end
    end

    local last_logs
    for epoch = s.initial_epoch + 1, epochs do
        ctx.epoch = epoch
        if verbose > 0 and epochs > 1 then ctx:print(string.format("Epoch %d/%d", epoch, epochs)) end
        call(ctx, "on_epoch_begin", epoch)
        model:train()
        local bar = progress.new{ target = steps, verbose = verbose, out = output, live = args.live }
        local m, step = means(), 0
        local lr_used = opt:get_lr()
        local order = { shuffle = shuffle, seed = s.seed, epoch = epoch }
        each_batch(train, batch_size, order, function(x, y, w)
            step = step + 1
            y = y or x
            if not whorl.is_tensor(w) then w = nil end
            local n = batch_size_of(who, x)
            opt:zero_grad()
            local pred = model(x)
            local loss = loss_fn(pred, y, w)
            if not whorl.is_tensor(loss) then
                fail(who, "the loss returned a %s, not a scalar tensor", type(loss))
            end
            local value = loss:item()
            if not is_finite(value) then
                call(ctx, "on_loss_nonfinite", epoch, step, value)
                if ctx.abort then return true end
            end
            loss:backward()
            opt:step()
            m.count = m.count + n
            m:add("loss", value, n)
            if #metrics > 0 then
                whorl.no_grad(function()
                    for _, mt in ipairs(metrics) do m:add(mt.name, scalar(mt.fn(pred, y)), n) end
                end)
            end
            bar:update(step, m:values(), false)
            call(ctx, "on_train_batch_end", step, { loss = value, size = n })
        end)
        if ctx.abort then
            if bar.live and verbose == 1 and step > 1 then output:write("\n") end
            break
        end
        if m.count == 0 then fail(who, "the training data gave no batches in epoch %d", epoch) end
        local values = m:values()
        if valid then
            local vm = run_eval(model, loss_fn, metrics, valid, batch_size, nil)
            if vm.count == 0 then fail(who, "the validation data gave no batches") end
            for _, kv in ipairs(vm:values("val_")) do values[#values + 1] = kv end
        end
        local logs = {}
        for _, kv in ipairs(values) do logs[kv[1]] = kv[2] end
        if logs_lr then
            logs.learning_rate = lr_used
            values[#values + 1] = { "learning_rate", lr_used }
        end
        append_history(s.history, epoch, logs)
        bar:update(steps or step, values, true)
        call(ctx, "on_epoch_end", epoch, logs)
        last_logs = logs
        if ctx.stop_training then break end
    end
    call(ctx, "on_train_end", last_logs)
    if ctx.abort then
        s.history.stop_reason = ctx.abort
        if ctx.abort_raises then error(ctx.abort, 0) end
        ctx:print(ctx.abort)
    end
    return s.history, model, opt
end

return M
