-- Learning-rate schedules and ReduceLROnPlateau.
--
-- A schedule is a pure function of the optimizer's step count (Keras'
-- LearningRateSchedule, evaluated at optimizer.iterations before each
-- update, so the first update uses step 0); give one as an optimizer's lr.
--   schedules.step{initial_lr, step_size, gamma = 0.1}
--       initial_lr * gamma ^ floor(step / step_size)          (PyTorch's StepLR)
--   schedules.exponential{initial_lr, decay_steps, decay_rate, staircase = false}
--       initial_lr * decay_rate ^ (step / decay_steps)          (Keras' ExponentialDecay)
--   schedules.cosine{initial_lr, decay_steps, alpha = 0, warmup_steps = 0, warmup_target}
--       Keras' CosineDecay: optional linear warmup from initial_lr to
--       warmup_target, then initial * ((1 - alpha) * 0.5 * (1 + cos(pi * t / decay_steps)) + alpha)
--   schedules.piecewise{boundaries = {b1, b2, ...}, values = {v1, v2, v3, ...}}
--       v1 while step <= b1, v2 while step <= b2, ... (Keras' PiecewiseConstantDecay)
-- schedule:at(step) or schedule(step) gives the rate; config() describes it.
--
-- ReduceLROnPlateau(optimizer, {factor = 0.1, patience = 10, min_delta = 1e-4,
--     cooldown = 0, min_lr = 0, mode = "min"}) follows Keras' callback: call
-- plateau:step(val_loss) once per epoch; after `patience` epochs without an
-- improvement by more than min_delta it multiplies the optimizer's lr by
-- factor (not below min_lr) and waits `cooldown` epochs.  Its state
-- (best, wait, cooldown_counter) is plain numbers: state_dict()/load_state_dict().
local S = {}

local Schedule = {}
Schedule.__index = Schedule
Schedule.__call = function(self, step) return self:at(step) end
Schedule.__is_schedule = true

function S.is_schedule(v)
    return type(v) == "table" and getmetatable(v) == Schedule
end

local function check(name, o, spec)
    if type(o) ~= "table" then error(string.format("schedules.%s: expected an options table", name), 3) end
    for k in pairs(o) do
        if spec[k] == nil then
            local names = {}
            for n in pairs(spec) do names[#names + 1] = n end
            table.sort(names)
            error(string.format("schedules.%s: unknown option '%s' (expected %s)", name, tostring(k),
                table.concat(names, ", ")), 3)
        end
    end
    local out = {}
    for k, kind in pairs(spec) do
        local v = o[k]
        if kind == "required" and v == nil then
            error(string.format("schedules.%s: %s is required", name, k), 3)
        end
        if v ~= nil and k ~= "boundaries" and k ~= "values" and k ~= "staircase"
            and type(v) ~= "number" then
            error(string.format("schedules.%s: %s must be a number", name, k), 3)
        end
        out[k] = v
    end
    return out
end

local function make(kind, params, fn)
    params.type = kind
    return setmetatable({ params = params, fn = fn }, Schedule)
end

function Schedule:at(step)
    if type(step) ~= "number" or step < 0 then
        error("schedule: the step must be a number >= 0", 2)
    end
    return self.fn(self.params, step)
end

function Schedule:config()
    local c = {}
    for k, v in pairs(self.params) do
        if type(v) == "table" then c[k] = { table.unpack(v) } else c[k] = v end
    end
    return c
end

local makers = {}

function makers.step(o)
    o = check("step", o, { initial_lr = "required", step_size = "required", gamma = "optional" })
    if o.step_size <= 0 then error("schedules.step: step_size must be > 0", 2) end
    o.gamma = o.gamma or 0.1
    return make("step", o, function(p, t)
        return p.initial_lr * p.gamma ^ math.floor(t / p.step_size)
    end)
end

function makers.exponential(o)
    o = check("exponential", o, { initial_lr = "required", decay_steps = "required",
        decay_rate = "required", staircase = "optional" })
    if o.decay_steps <= 0 then error("schedules.exponential: decay_steps must be > 0", 2) end
    o.staircase = o.staircase and true or false
    return make("exponential", o, function(p, t)
        local e = t / p.decay_steps
        if p.staircase then e = math.floor(e) end
        return p.initial_lr * p.decay_rate ^ e
    end)
end

function makers.cosine(o)
    o = check("cosine", o, { initial_lr = "required", decay_steps = "required", alpha = "optional",
        warmup_steps = "optional", warmup_target = "optional" })
    if o.decay_steps <= 0 then error("schedules.cosine: decay_steps must be > 0", 2) end
    o.alpha, o.warmup_steps = o.alpha or 0, o.warmup_steps or 0
    local function decay(p, lr0, t)
        t = math.min(t, p.decay_steps)
        local c = 0.5 * (1 + math.cos(math.pi * t / p.decay_steps))
        return lr0 * ((1 - p.alpha) * c + p.alpha)
    end
    return make("cosine", o, function(p, t)
        if p.warmup_target == nil then return decay(p, p.initial_lr, t) end
        if t < p.warmup_steps then
            return p.initial_lr + (p.warmup_target - p.initial_lr) * t / p.warmup_steps
        end
        return decay(p, p.warmup_target, t - p.warmup_steps)
    end)
end

function makers.piecewise(o)
    o = check("piecewise", o, { boundaries = "required", values = "required" })
    if type(o.boundaries) ~= "table" or type(o.values) ~= "table"
        or #o.values ~= #o.boundaries + 1 then
        error("schedules.piecewise: needs boundaries {b1, ...} and one more value than boundaries", 2)
    end
    for i = 2, #o.boundaries do
        if o.boundaries[i] <= o.boundaries[i - 1] then
            error("schedules.piecewise: boundaries must increase", 2)
        end
    end
    return make("piecewise", o, function(p, t)
        for i, b in ipairs(p.boundaries) do if t <= b then return p.values[i] end end
        return p.values[#p.values]
    end)
end

for k, f in pairs(makers) do S[k] = f end

function S.from_config(cfg)
    local f = type(cfg) == "table" and makers[cfg.type]
    if not f then
        error("schedules.from_config: unknown schedule " ..
            tostring(type(cfg) == "table" and cfg.type or cfg), 2)
    end
    local o = {}
    for k, v in pairs(cfg) do if k ~= "type" then o[k] = v end end
    return f(o)
end

-- ---- ReduceLROnPlateau ----------------------------------------------------------------

local Plateau = {}
Plateau.__index = Plateau

local PLATEAU_DEFAULTS = { factor = 0.1, patience = 10, min_delta = 1e-4, cooldown = 0,
    min_lr = 0, mode = "min" }

function S.ReduceLROnPlateau(optimizer, opts)
    if type(optimizer) ~= "table" or type(optimizer.set_lr) ~= "function" then
        error("ReduceLROnPlateau: the first argument must be an optimizer", 2)
    end
    opts = opts or {}
    local o = {}
    for k, v in pairs(PLATEAU_DEFAULTS) do o[k] = v end
    for k, v in pairs(opts) do
        if PLATEAU_DEFAULTS[k] == nil then
            error("ReduceLROnPlateau: unknown option '" .. tostring(k) .. "'", 2)
        end
        o[k] = v
    end
    if type(o.factor) ~= "number" or o.factor >= 1 or o.factor <= 0 then
        error("ReduceLROnPlateau: factor must be in (0, 1)", 2)
    end
    if o.mode ~= "min" and o.mode ~= "max" then
        error("ReduceLROnPlateau: mode must be 'min' or 'max'", 2)
    end
    if type(optimizer.lr) ~= "number" then
        error("ReduceLROnPlateau: the optimizer's lr is a schedule; it needs a constant lr", 2)
    end
    local p = setmetatable({ optimizer = optimizer, wait = 0, cooldown_counter = 0 }, Plateau)
    for k, v in pairs(o) do p[k] = v end
    p.best = o.mode == "min" and math.huge or -math.huge
    return p
end

function Plateau:improved(value)
    if self.mode == "min" then return value < self.best - self.min_delta end
    return value > self.best + self.min_delta
end

-- Feeds one epoch's metric; returns the (possibly new) lr and whether it
-- was reduced.
function Plateau:step(value)
    if type(value) ~= "number" then error("ReduceLROnPlateau:step: expected a number", 2) end
    local reduced = false
    if self.cooldown_counter > 0 then
        self.cooldown_counter = self.cooldown_counter - 1
        self.wait = 0
    end
    if self:improved(value) then
        self.best = value
        self.wait = 0
    elseif self.cooldown_counter <= 0 then
        self.wait = self.wait + 1
        if self.wait >= self.patience then
            local old = self.optimizer.lr
            if old > self.min_lr then
                self.optimizer:set_lr(math.max(old * self.factor, self.min_lr))
                reduced = true
            end
            self.cooldown_counter = self.cooldown
            self.wait = 0
        end
    end
    return self.optimizer.lr, reduced
end

function Plateau:state_dict()
    return { best = self.best, wait = self.wait, cooldown_counter = self.cooldown_counter }
end

function Plateau:load_state_dict(sd)
    for _, k in ipairs({ "best", "wait", "cooldown_counter" }) do
        if type(sd[k]) ~= "number" then
            error("ReduceLROnPlateau:load_state_dict: '" .. k .. "' must be a number", 2)
        end
    end
    self.best, self.wait, self.cooldown_counter = sd.best, sd.wait, sd.cooldown_counter
end

function Plateau:config()
    local c = { type = "ReduceLROnPlateau" }
    for k in pairs(PLATEAU_DEFAULTS) do c[k] = self[k] end
    return c
end

return S
