-- Callbacks for whorl.fit, after Keras' (epochs are 1-based here, as in
-- the "Epoch 3/200" line):
--
--   callbacks.ModelCheckpoint(path, {monitor, mode, save_best_only = false,
--       weights_only = false, verbose = 0})
--       a complete checkpoint (model, optimizer, epoch, history, RNG: what
--       fit{resume = path} needs) after each epoch, or only when `monitor`
--       improved; weights_only keeps the weights alone (whorl.load(path,
--       {model = m}) reads them); path may hold Keras' fields:
--       "ck/epoch_{epoch:02d}_{val_loss:.4f}.safetensors"
--   callbacks.EarlyStopping{monitor, min_delta = 0, patience = 0, mode,
--       baseline, restore_best_weights = false, start_from_epoch = 0, verbose = 0}
--       Keras 3's rules, including restoring the best weights at the end of
--       training whenever restore_best_weights is set
--   callbacks.CSVLogger(path, {separator = ",", append = false})
--       one row per epoch: epoch, then the logs' keys sorted (use append
--       = true when resuming)
--   callbacks.NaNGuard{raise = true}
--       stops at the first step whose loss is NaN or infinite, before that
--       step's update, naming the epoch and step; checkpoints already
--       written stay as they are (the epoch never ends, so no checkpoint
--       of it is made).  raise = true: fit raises the message; false: fit
--       returns, with history.stop_reason set
--   callbacks.ReduceLROnPlateau{monitor = "val_loss", factor = 0.1, patience = 10,
--       min_delta = 1e-4, cooldown = 0, min_lr = 0, mode, verbose = 0}
--       optim.ReduceLROnPlateau fed once per epoch
--   callbacks.LearningRateScheduler(function(epoch, lr) return new_lr end, {verbose = 0})
--       sets the optimizer's lr at the start of each epoch
--   callbacks.Lambda{on_epoch_end = function(self, ctx, epoch, logs) ... end, ...}
--
-- monitor defaults to "val_loss" when fit has validation data, "loss"
-- otherwise; mode "auto" picks "max" for names with acc, ssim or psnr.
--
-- A callback is any table with some of these methods (ctx is fit's state:
-- model, optimizer, loss, history, epochs, epoch, steps, stop_training,
-- has_validation; ctx:save(path, {weights_only}) writes a complete
-- checkpoint, ctx:print(msg) writes a line to fit's output):
--   on_train_begin(ctx)   on_epoch_begin(ctx, epoch)
--   on_train_batch_end(ctx, step, logs)     logs: loss (this batch), size
--   on_loss_nonfinite(ctx, epoch, step, value)  set ctx.abort = message to stop
--   on_epoch_end(ctx, epoch, logs)          logs: loss, metrics, val_* (epoch means)
--   on_train_end(ctx, logs)
--   state_dict() / load_state_dict(state)   plain data kept in checkpoints,
--                                           so resumed training continues them
local whorl = require "whorl"
local optim = require "whorl.optim"

local M = {}

local function class(name)
    local c = { name = name }
    c.__index = c
    return c
end

local function check_opts(who, opts, allowed)
    opts = opts or {}
    if type(opts) ~= "table" then error(who .. ": options must be a table", 3) end
    for k in pairs(opts) do
        if not allowed[k] then
            local names = {}
            for n in pairs(allowed) do names[#names + 1] = n end
            table.sort(names)
            error(string.format("%s: unknown option '%s' (expected %s)", who, tostring(k),
                table.concat(names, ", ")), 3)
        end
    end
    return opts
end

local function set_of(...)
    local s = {}
    for _, k in ipairs({ ... }) do s[k] = true end
    return s
end

-- The monitored value of logs, or an error listing what there is.
local function monitored(who, monitor, logs)
    local v = logs[monitor]
    if type(v) ~= "number" then
        local keys = {}
        for k in pairs(logs) do keys[#keys + 1] = k end
        table.sort(keys)
        error(string.format("%s: monitor '%s' is not among the epoch's logs (%s)%s", who, monitor,
            table.concat(keys, ", "),
            monitor:sub(1, 4) == "val_" and "; fit needs valid = ... for validation values" or ""),
            0)
    end
    return v
end

local function resolve_mode(who, mode, monitor)
    mode = mode or "auto"
    if mode == "auto" then
        local m = monitor:lower()
        if m:find("acc") or m:find("ssim") or m:find("psnr") then return "max" end
        return "min"
    end
    if mode ~= "min" and mode ~= "max" then
        error(string.format("%s: mode must be 'auto', 'min' or 'max', got %s", who, tostring(mode)), 0)
    end
    return mode
end

local function default_monitor(ctx, monitor)
    if monitor then return monitor end
    return ctx.has_validation and "val_loss" or "loss"
end

-- Copies of the model's tensors (EarlyStopping's best weights).
local function copy_weights(model)
    return whorl.no_grad(function()
        local out = {}
        for name, t in pairs(model:state_dict()) do out[name] = t:detach():clone() end
        return out
    end)
end

-- ---- ModelCheckpoint ----------------------------------------------------------------------

local ModelCheckpoint = class("ModelCheckpoint")
M.ModelCheckpoint = ModelCheckpoint

-- Python's format fields of Keras' file paths: {epoch}, {epoch:02d}, {val_loss:.4f}.
function M.format_path(template, epoch, logs)
    return (template:gsub("{([%w_]+)(:?)([^}]*)}", function(key, colon, spec)
        local v
        if key == "epoch" then v = epoch else v = logs[key] end
        if v == nil then
            error(string.format("ModelCheckpoint: the path '%s' names {%s}, which the logs do not " ..
                "have", template, key), 0)
        end
        if colon == "" or spec == "" then
            if math.type(v) == "integer" or (key == "epoch") then return string.format("%d", v) end
            return tostring(v)
        end
        if not spec:match("^[-+ 0#]*%d*%.?%d*[dfeEgGs]$") then
            error(string.format("ModelCheckpoint: unsupported format '%s' for {%s}", spec, key), 0)
        end
        return string.format("%" .. spec, v)
    end))
end

function ModelCheckpoint.new(path, opts)
    local who = "ModelCheckpoint"
    if type(path) ~= "string" or path == "" then error(who .. ": the first argument is the path", 2) end
    opts = check_opts(who, opts, set_of("monitor", "mode", "save_best_only", "weights_only",
        "verbose", "initial_value_threshold"))
    return setmetatable({ path = path, monitor = opts.monitor, mode = opts.mode,
        save_best_only = opts.save_best_only or false, weights_only = opts.weights_only or false,
        verbose = opts.verbose or 0, best = opts.initial_value_threshold }, ModelCheckpoint)
end

function ModelCheckpoint:on_train_begin(ctx)
    self.monitor_name = default_monitor(ctx, self.monitor)
    self.mode_name = resolve_mode("ModelCheckpoint", self.mode, self.monitor_name)
end

function ModelCheckpoint:on_epoch_end(ctx, epoch, logs)
    local path = M.format_path(self.path, epoch, logs)
    if self.save_best_only then
        local v = monitored("ModelCheckpoint", self.monitor_name, logs)
        local better = v == v and (self.best == nil or
            (self.mode_name == "min" and v < self.best) or (self.mode_name == "max" and v > self.best))
        if not better then
            if self.verbose > 0 then
                ctx:print(string.format("Epoch %d: %s did not improve from %.5f", epoch,
                    self.monitor_name, self.best or 0 / 0))
            end
            return
        end
        if self.verbose > 0 then
            ctx:print(string.format("Epoch %d: %s improved from %.5f to %.5f, saving model to %s",
                epoch, self.monitor_name, self.best or (self.mode_name == "min" and math.huge
                    or -math.huge), v, path))
        end
        self.best = v
    elseif self.verbose > 0 then
        ctx:print(string.format("Epoch %d: saving model to %s", epoch, path))
    end
    ctx:save(path, { weights_only = self.weights_only })
    ctx.last_checkpoint, ctx.last_checkpoint_epoch = path, epoch
end

function ModelCheckpoint:state_dict() return { best = self.best } end
function ModelCheckpoint:load_state_dict(s) self.best = s.best end

-- ---- EarlyStopping -------------------------------------------------------------------------

local EarlyStopping = class("EarlyStopping")
M.EarlyStopping = EarlyStopping

function EarlyStopping.new(opts)
    opts = check_opts("EarlyStopping", opts, set_of("monitor", "min_delta", "patience", "mode",
        "baseline", "restore_best_weights", "start_from_epoch", "verbose"))
    return setmetatable({ monitor = opts.monitor, min_delta = math.abs(opts.min_delta or 0),
        patience = opts.patience or 0, mode = opts.mode, baseline = opts.baseline,
        restore_best_weights = opts.restore_best_weights or false,
        start_from_epoch = opts.start_from_epoch or 0, verbose = opts.verbose or 0,
        wait = 0, stopped_epoch = 0 }, EarlyStopping)
end

function EarlyStopping:improved(v, ref)
    if ref == nil then return true end
    if self.mode_name == "min" then return v + self.min_delta < ref end
    return v - self.min_delta > ref
end

function EarlyStopping:on_train_begin(ctx)
    self.monitor_name = default_monitor(ctx, self.monitor)
    self.mode_name = resolve_mode("EarlyStopping", self.mode, self.monitor_name)
    self.stopped_epoch = 0
end

function EarlyStopping:on_epoch_end(ctx, epoch, logs)
    local v = monitored("EarlyStopping", self.monitor_name, logs)
    if epoch <= self.start_from_epoch then return end
    if self.restore_best_weights and self.best_weights == nil then
        self.best_weights, self.best_epoch = copy_weights(ctx.model), epoch
    end
    self.wait = self.wait + 1
    if self:improved(v, self.best) then
        self.best, self.best_epoch = v, epoch
        if self.restore_best_weights then self.best_weights = copy_weights(ctx.model) end
        if self.baseline == nil or self:improved(v, self.baseline) then self.wait = 0 end
        return
    end
    if self.wait >= self.patience and epoch > 1 then
        self.stopped_epoch = epoch
        ctx.stop_training = true
    end
end

function EarlyStopping:on_train_end(ctx)
    if self.stopped_epoch > 0 and self.verbose > 0 then
        ctx:print(string.format("Epoch %d: early stopping", self.stopped_epoch))
    end
    if self.restore_best_weights and self.best_weights then
        if self.verbose > 0 then
            ctx:print(string.format("Restoring model weights from the end of the best epoch: %d.",
                self.best_epoch))
        end
        ctx.model:load_state_dict(self.best_weights)
    end
end

function EarlyStopping:state_dict()
    return { wait = self.wait, best = self.best, best_epoch = self.best_epoch }
end

function EarlyStopping:load_state_dict(s)
    self.wait, self.best, self.best_epoch = s.wait or 0, s.best, s.best_epoch
end

-- ---- CSVLogger -------------------------------------------------------------------------------

local CSVLogger = class("CSVLogger")
M.CSVLogger = CSVLogger

function CSVLogger.new(path, opts)
    if type(path) ~= "string" or path == "" then error("CSVLogger: the first argument is the path", 2) end
    opts = check_opts("CSVLogger", opts, set_of("separator", "append"))
    return setmetatable({ path = path, sep = opts.separator or ",", append = opts.append or false },
        CSVLogger)
end

-- The shortest decimal that reads back as the same number.
local function shortest(v)
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    for digits = 6, 17 do
        local s = string.format("%." .. digits .. "g", v)
        if tonumber(s) == v then return s end
    end
end

function CSVLogger:on_train_begin(ctx)
    local existing = false
    if self.append then
        local f = io.open(self.path, "r")
        if f then
            existing = (f:read(1) ~= nil)
            f:close()
        end
    end
    local f, err = io.open(self.path, self.append and "a" or "w")
    if not f then error(string.format("CSVLogger: cannot write '%s': %s", self.path, err), 0) end
    self.file, self.header_done = f, existing
end

function CSVLogger:on_epoch_end(ctx, epoch, logs)
    if not self.keys then
        local keys = {}
        for k in pairs(logs) do keys[#keys + 1] = k end
        table.sort(keys)
        self.keys = keys
    end
    if not self.header_done then
        self.file:write("epoch", self.sep, table.concat(self.keys, self.sep), "\n")
        self.header_done = true
    end
    local row = { string.format("%d", epoch) }
    for i, k in ipairs(self.keys) do
        local v = logs[k]
        row[i + 1] = type(v) == "number" and shortest(v) or ""
    end
    self.file:write(table.concat(row, self.sep), "\n")
    self.file:flush()
end

function CSVLogger:on_train_end()
    if self.file then self.file:close() end
    self.file, self.keys = nil, nil
end

-- ---- NaNGuard ----------------------------------------------------------------------------------

local NaNGuard = class("NaNGuard")
M.NaNGuard = NaNGuard

function NaNGuard.new(opts)
    opts = check_opts("NaNGuard", opts, set_of("raise"))
    return setmetatable({ raise = opts.raise ~= false }, NaNGuard)
end

function NaNGuard:on_loss_nonfinite(ctx, epoch, step, value)
    local steps = ctx.steps and ("/" .. ctx.steps) or ""
    local kept
    if ctx.last_checkpoint then
        kept = string.format("the last good checkpoint, '%s' (epoch %d), is left as it was",
            ctx.last_checkpoint, ctx.last_checkpoint_epoch)
    else
        kept = "no checkpoint was written in this run"
    end
    local what = value ~= value and "NaN" or (value > 0 and "inf" or "-inf")
    ctx.abort = string.format("NaNGuard: the loss became %s at epoch %d, step %d%s; training " ..
        "stopped before that step's update (%s)", what, epoch, step, steps, kept)
    ctx.abort_raises = self.raise
end

-- ---- ReduceLROnPlateau ---------------------------------------------------------------------------

local Plateau = class("ReduceLROnPlateau")
M.ReduceLROnPlateau = Plateau

function Plateau.new(opts)
    opts = check_opts("ReduceLROnPlateau", opts, set_of("monitor", "factor", "patience",
        "min_delta", "cooldown", "min_lr", "mode", "verbose"))
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    local self = setmetatable({ monitor = o.monitor, verbose = o.verbose or 0, logs_lr = true },
        Plateau)
    o.monitor, o.verbose = nil, nil
    self.opts = o
    return self
end

function Plateau:on_train_begin(ctx)
    self.monitor_name = default_monitor(ctx, self.monitor)
    local o = {}
    for k, v in pairs(self.opts) do o[k] = v end
    o.mode = resolve_mode("ReduceLROnPlateau", o.mode, self.monitor_name)
    local ok, p = pcall(optim.ReduceLROnPlateau, ctx.optimizer, o)
    if not ok then error(p, 0) end
    if self.pending then p:load_state_dict(self.pending) end
    self.plateau, self.pending = p, nil
end

function Plateau:on_epoch_end(ctx, epoch, logs)
    local v = monitored("ReduceLROnPlateau", self.monitor_name, logs)
    local lr, reduced = self.plateau:step(v)
    if reduced and self.verbose > 0 then
        ctx:print(string.format("Epoch %d: ReduceLROnPlateau reducing learning rate to %s.", epoch,
            tostring(lr)))
    end
end

function Plateau:state_dict() return self.plateau and self.plateau:state_dict() or self.pending end

function Plateau:load_state_dict(s)
    if self.plateau then self.plateau:load_state_dict(s) else self.pending = s end
end

-- ---- LearningRateScheduler -----------------------------------------------------------------------

local Scheduler = class("LearningRateScheduler")
M.LearningRateScheduler = Scheduler

function Scheduler.new(schedule, opts)
    local callable = type(schedule) == "function" or (type(schedule) == "table"
        and getmetatable(schedule) and getmetatable(schedule).__call)
    if not callable then
        error("LearningRateScheduler: expected a function(epoch, lr) -> lr", 2)
    end
    opts = check_opts("LearningRateScheduler", opts, set_of("verbose"))
    return setmetatable({ schedule = schedule, verbose = opts.verbose or 0, logs_lr = true },
        Scheduler)
end

function Scheduler:on_epoch_begin(ctx, epoch)
    local opt = ctx.optimizer
    if type(opt.lr) ~= "number" then
        error("LearningRateScheduler: the optimizer's lr is a schedule of steps already; give " ..
            "it a number", 0)
    end
    local lr = self.schedule(epoch, opt.lr)
    if type(lr) ~= "number" or lr ~= lr or lr < 0 then
        error(string.format("LearningRateScheduler: the schedule returned %s for epoch %d, not " ..
            "a learning rate", tostring(lr), epoch), 0)
    end
    opt:set_lr(lr)
    if self.verbose > 0 then
        ctx:print(string.format("Epoch %d: LearningRateScheduler setting learning rate to %s.",
            epoch, tostring(lr)))
    end
end

-- ---- Lambda --------------------------------------------------------------------------------------

local Lambda = class("Lambda")
M.Lambda = Lambda

local HOOKS = set_of("on_train_begin", "on_epoch_begin", "on_train_batch_end", "on_loss_nonfinite",
    "on_epoch_end", "on_train_end")

function Lambda.new(fns)
    fns = check_opts("Lambda", fns, HOOKS)
    local self = setmetatable({}, Lambda)
    for k, f in pairs(fns) do
        if type(f) ~= "function" then error("Lambda: " .. k .. " must be a function", 2) end
        self[k] = f
    end
    return self
end

-- Constructors callable as callbacks.X(...) as well as callbacks.X.new(...).
for _, c in pairs({ ModelCheckpoint, EarlyStopping, CSVLogger, NaNGuard, Plateau, Scheduler, Lambda }) do
    setmetatable(c, { __call = function(_, ...) return c.new(...) end })
end

M.HOOKS = HOOKS
return M
