-- whorl.optim: SGD, RMSprop, Adam and AdamW with Keras 3's defaults and
-- update formulas, over whorl's in-place ops.
--
--   local opt = optim.RMSprop(model, {lr = 0.001})   -- a module or a list of tensors
--   loss:backward(); opt:step(); opt:zero_grad()
--
-- Defaults and updates (g the gradient, t the step count from 1):
--   SGD      lr 0.01, momentum 0, nesterov false
--            m = momentum*m - lr*g;  p += m  (nesterov: p += momentum*m - lr*g)
--   RMSprop  lr 0.001, rho 0.9, momentum 0, epsilon 1e-7, centered false
--            v = rho*v + (1-rho)*g^2;  p -= lr*g / sqrt(v + epsilon)
--            (Keras puts epsilon inside the root; centered: v - avg(g)^2 + epsilon)
--   Adam     lr 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-7, amsgrad false
--            m += (g-m)*(1-beta_1);  v += (g^2-v)*(1-beta_2)
--            p -= lr*sqrt(1-beta_2^t)/(1-beta_1^t) * m / (sqrt(v) + epsilon)
--   AdamW    Adam with weight_decay 0.004
-- Options of every optimizer (Keras' names):
--   weight_decay     decoupled: p -= p * weight_decay * lr before the update
--   clipnorm         scale each gradient to at most this L2 norm
--   global_clipnorm  scale all gradients together to at most this norm
--   clipvalue        clamp each gradient element to [-v, v]
--   lr               a number or a schedule (whorl.optim.schedules), which
--                    is evaluated at the step count before the update;
--                    Keras' name learning_rate is accepted too
-- Parameters without a gradient are skipped.  State (step count, lr and
-- slot tensors such as "velocity.3" for the 3rd parameter) is a flat table
-- of numbers and tensors: state_dict()/load_state_dict(); config() gives the
-- hyperparameters as plain data for optim.from_config(cfg, params).
local whorl = require "whorl"
local schedules = require "whorl.optim.schedules"

local optim = {
    schedules = schedules,
    ReduceLROnPlateau = schedules.ReduceLROnPlateau,
}

local Optimizer = {}
Optimizer.__index = Optimizer
optim.Optimizer = Optimizer

local COMMON = { lr = true, weight_decay = true, clipnorm = true, global_clipnorm = true,
    clipvalue = true }

local kinds = {}

-- A zero tensor like p (shape, dtype and device), its own storage.
local function zeros_like(p)
    return p:detach():clone():zero_()
end

-- The core's elementwise loops walk a tensor row by row along its last
-- dimension, so a (128, 128, 3, 3) kernel is 147,456 rows of 3: updates
-- run on flat (1-d) views of the contiguous parameters, gradients and
-- slots instead, one row each.  Made under no_grad, the views record
-- nothing.
local function flat(t)
    if t:is_contiguous() then return t:view(-1) end
    return t
end

-- The flat view of slot `name` of parameter i (the slot itself keeps the
-- parameter's shape, which is what state_dict shows).
local function slot(self, name, i)
    local views = self._flat_slots[name]
    local v = views[i]
    if not v then
        local t = zeros_like(self.params[i])
        self.slots[name][i] = t
        v = flat(t)
        views[i] = v
    end
    return v
end

-- Scratch tensor i (not state: rebuilt on demand, never serialised).
local function scratch(self, i, p)
    local t = self._scratch[i]
    if not t then
        t = zeros_like(p)
        self._scratch[i] = t
    end
    return t
end

local function params_of(kind, params)
    if type(params) == "table" and type(params.parameters) == "function" then
        params = params:parameters()
    end
    if type(params) ~= "table" then
        error(string.format("%s: expected a module or a list of parameter tensors, got %s", kind,
            type(params)), 3)
    end
    local list = {}
    for i, p in ipairs(params) do
        if not whorl.is_tensor(p) then
            error(string.format("%s: parameter %d is a %s, not a tensor", kind, i, type(p)), 3)
        end
        list[i] = p
    end
    if #list == 0 then error(kind .. ": no parameters to optimise", 3) end
    return list
end

local function new(kind, params, opts)
    local spec = kinds[kind]
    opts = opts or {}
    if type(opts) ~= "table" then error(kind .. ": options must be a table", 3) end
    if opts.learning_rate ~= nil then
        if opts.lr ~= nil then error(kind .. ": give lr or learning_rate, not both", 3) end
        local copy = {}
        for k, v in pairs(opts) do copy[k] = v end
        copy.lr, copy.learning_rate = copy.learning_rate, nil
        opts = copy
    end
    local self = setmetatable({ kind = kind, params = params_of(kind, params), iterations = 0,
        slots = {}, _scratch = {} }, Optimizer)
    for k, v in pairs(opts) do
        if not COMMON[k] and spec.defaults[k] == nil then
            local names = {}
            for n in pairs(COMMON) do names[#names + 1] = n end
            for n in pairs(spec.defaults) do names[#names + 1] = n end
            table.sort(names)
            error(string.format("%s: unknown option '%s' (expected %s)", kind, tostring(k),
                table.concat(names, ", ")), 3)
        end
    end
    for k, v in pairs(spec.defaults) do
        local given = opts[k]
        if given == nil then given = v end
        if type(given) ~= type(v) then
            error(string.format("%s: %s must be a %s, got %s", kind, k, type(v), type(given)), 3)
        end
        self[k] = given
    end
    local lr = opts.lr == nil and spec.lr or opts.lr
    if type(lr) ~= "number" and not schedules.is_schedule(lr) then
        error(string.format("%s: lr must be a number or a schedule, got %s", kind, type(lr)), 3)
    end
    self.lr = lr
    for _, k in ipairs({ "weight_decay", "clipnorm", "global_clipnorm", "clipvalue" }) do
        local v = opts[k]
        if v == nil and k == "weight_decay" then v = spec.weight_decay end
        if v ~= nil and (type(v) ~= "number" or v < 0) then
            error(string.format("%s: %s must be a number >= 0", kind, k), 3)
        end
        self[k] = v
    end
    local n = 0
    for _, k in ipairs({ "clipnorm", "global_clipnorm", "clipvalue" }) do
        if self[k] then n = n + 1 end
    end
    if n > 1 then error(kind .. ": give only one of clipnorm, global_clipnorm and clipvalue", 3) end
    self._flat_slots = {}
    for _, name in ipairs(spec.slots(self)) do
        self.slots[name], self._flat_slots[name] = {}, {}
    end
    self._flat_params = whorl.no_grad(function()
        local views = {}
        for i, p in ipairs(self.params) do views[i] = flat(p) end
        return views
    end)
    return self
end

function Optimizer:get_lr()
    if type(self.lr) == "number" then return self.lr end
    return self.lr:at(self.iterations)
end

function Optimizer:set_lr(lr)
    if type(lr) ~= "number" and not schedules.is_schedule(lr) then
        error("set_lr: expected a number or a schedule", 2)
    end
    self.lr = lr
end

function Optimizer:zero_grad()
    for _, p in ipairs(self.params) do p.grad = nil end
end

-- The L2 norm of all gradients together (a Lua number).
local function global_norm(grads, n)
    local sq = 0
    for i = 1, n do
        local g = grads[i]
        if g then sq = sq + g:sum_squares() end
    end
    return math.sqrt(sq)
end

local function clip(self, grads, n)
    if self.clipnorm and self.clipnorm > 0 then
        for i = 1, n do
            local g = grads[i]
            if g then
                local norm = math.sqrt(g:sum_squares())
                if norm > self.clipnorm then g:mul_(self.clipnorm / norm) end
            end
        end
    elseif self.global_clipnorm and self.global_clipnorm > 0 then
        local norm = global_norm(grads, n)
        if norm ~= norm or norm == math.huge then
            error(string.format("%s step %d: the gradients' global norm is %s; clipping cannot " ..
                "repair non-finite gradients", self.kind, self.iterations + 1, tostring(norm)), 0)
        end
        if norm > self.global_clipnorm then
            local scale = self.global_clipnorm / norm
            for i = 1, n do if grads[i] then grads[i]:mul_(scale) end end
        end
    elseif self.clipvalue and self.clipvalue > 0 then
        for i = 1, n do if grads[i] then grads[i]:clamp_(-self.clipvalue, self.clipvalue) end end
    end
end

local function step_body(self, lr)
    local params, n = self._flat_params, #self.params
    local grads = {}
    for i = 1, n do
        local g = self.params[i].grad
        grads[i] = g and flat(g)
    end
    clip(self, grads, n)
    local wd = self.weight_decay
    local update = kinds[self.kind].update
    for i = 1, n do
        local g = grads[i]
        if g then
            local p = params[i]
            if wd and wd > 0 then p:mul_(1 - wd * lr) end
            update(self, i, p, g, lr)
        end
    end
end

-- One update of every parameter that has a gradient.  Returns the lr used.
function Optimizer:step()
    local lr = self:get_lr()
    whorl.no_grad(step_body, self, lr)
    self.iterations = self.iterations + 1
    return lr
end

-- ---- the algorithms -------------------------------------------------------------------

kinds.SGD = {
    lr = 0.01,
    defaults = { momentum = 0.0, nesterov = false },
    slots = function(self) return self.momentum ~= 0 and { "momentum" } or {} end,
    update = function(self, i, p, g, lr)
        local mom = self.momentum
        if mom == 0 then
            p:add_(g, -lr)
            return
        end
        local m = slot(self, "momentum", i)
        m:mul_(mom):add_(g, -lr)
        if self.nesterov then p:add_(m, mom):add_(g, -lr) else p:add_(m) end
    end,
}

kinds.RMSprop = {
    lr = 0.001,
    defaults = { rho = 0.9, momentum = 0.0, epsilon = 1e-7, centered = false },
    slots = function(self)
        local s = { "velocity" }
        if self.momentum > 0 then s[#s + 1] = "momentum" end
        if self.centered then s[#s + 1] = "average_gradient" end
        return s
    end,
    update = function(self, i, p, g, lr)
        local rho = self.rho
        local v = slot(self, "velocity", i)
        v:mul_(rho):addcmul_(g, g, 1 - rho)
        local d = scratch(self, i, p):copy_(v)
        if self.centered then
            local a = slot(self, "average_gradient", i)
            a:mul_(rho):add_(g, 1 - rho)
            d:addcmul_(a, a, -1)
        end
        d:add_(self.epsilon):sqrt_()
        if self.momentum > 0 then
            local m = slot(self, "momentum", i)
            m:mul_(self.momentum):addcdiv_(g, d, lr)
            p:sub_(m)
        else
            p:addcdiv_(g, d, -lr)
        end
    end,
}

local function adam_update(self, i, p, g, lr)
    local b1, b2 = self.beta_1, self.beta_2
    local t = self.iterations + 1
    local alpha = lr * math.sqrt(1 - b2 ^ t) / (1 - b1 ^ t)
    local m = slot(self, "momentum", i)
    local v = slot(self, "velocity", i)
    m:mul_(b1):add_(g, 1 - b1)
    v:mul_(b2):addcmul_(g, g, 1 - b2)
    if self.amsgrad then
        local vh = slot(self, "velocity_hat", i)
        vh:copy_(whorl.maximum(vh, v))
        v = vh
    end
    local d = scratch(self, i, p):copy_(v):sqrt_():add_(self.epsilon)
    p:addcdiv_(m, d, -alpha)
end

local function adam_slots(self)
    local s = { "momentum", "velocity" }
    if self.amsgrad then s[#s + 1] = "velocity_hat" end
    return s
end

kinds.Adam = {
    lr = 0.001,
    defaults = { beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7, amsgrad = false },
    slots = adam_slots,
    update = adam_update,
}

kinds.AdamW = {
    lr = 0.001,
    weight_decay = 0.004,
    defaults = kinds.Adam.defaults,
    slots = adam_slots,
    update = adam_update,
}

for name in pairs(kinds) do
    optim[name] = function(params, opts) return new(name, params, opts) end
end

-- ---- state and config ---------------------------------------------------------------

-- Flat: iterations, lr (when a number) and "<slot>.<i>" -> tensor (the
-- live tensors).  Also returns the keys in a stable order.
function Optimizer:state_dict()
    local sd, keys = { iterations = self.iterations }, { "iterations" }
    if type(self.lr) == "number" then
        sd.lr = self.lr
        keys[#keys + 1] = "lr"
    end
    for _, name in ipairs(kinds[self.kind].slots(self)) do
        for i = 1, #self.params do
            local t = self.slots[name][i]
            if t then
                local k = name .. "." .. i
                sd[k] = t
                keys[#keys + 1] = k
            end
        end
    end
    return sd, keys
end

function Optimizer:load_state_dict(sd)
    if type(sd) ~= "table" then error("load_state_dict: expected a table", 2) end
    local problems = {}
    local it = sd.iterations
    if type(it) ~= "number" or it ~= math.floor(it) or it < 0 then
        problems[#problems + 1] = "iterations must be an integer >= 0"
    end
    if sd.lr ~= nil and type(sd.lr) ~= "number" then problems[#problems + 1] = "lr must be a number" end
    local known = {}
    for _, name in ipairs(kinds[self.kind].slots(self)) do known[name] = true end
    local copies = {}
    for k, v in pairs(sd) do
        if k ~= "iterations" and k ~= "lr" then
            local name, idx = tostring(k):match("^([%a_]+)%.(%d+)$")
            idx = tonumber(idx)
            if not name or not known[name] then
                problems[#problems + 1] = string.format("unexpected entry '%s' for %s", tostring(k),
                    self.kind)
            elseif idx < 1 or idx > #self.params then
                problems[#problems + 1] = string.format("'%s' names parameter %d of %d", k, idx,
                    #self.params)
            elseif not whorl.is_tensor(v) then
                problems[#problems + 1] = string.format("'%s' is a %s, not a tensor", k, type(v))
            else
                local a, b = self.params[idx]:size(), v:size()
                local same = #a == #b
                for d = 1, #a do same = same and a[d] == b[d] end
                if not same then
                    problems[#problems + 1] = string.format("'%s' has shape [%s], parameter %d " ..
                        "has [%s]", k, table.concat(b, ", "), idx, table.concat(a, ", "))
                else
                    copies[#copies + 1] = { name, idx, v }
                end
            end
        end
    end
    if #problems > 0 then
        table.sort(problems)
        error(string.format("%s:load_state_dict: %s", self.kind, table.concat(problems, "; ")), 2)
    end
    self.iterations = math.tointeger(it)
    if sd.lr ~= nil and type(self.lr) == "number" then self.lr = sd.lr end
    for name in pairs(self.slots) do self.slots[name], self._flat_slots[name] = {}, {} end
    whorl.no_grad(function()
        for _, c in ipairs(copies) do
            slot(self, c[1], c[2]):copy_(flat(c[3]:contiguous()))
        end
    end)
end

function Optimizer:config()
    local c = { type = self.kind }
    c.lr = type(self.lr) == "number" and self.lr or self.lr:config()
    for k in pairs(kinds[self.kind].defaults) do c[k] = self[k] end
    for _, k in ipairs({ "weight_decay", "clipnorm", "global_clipnorm", "clipvalue" }) do
        c[k] = self[k]
    end
    return c
end

function optim.from_config(cfg, params)
    if type(cfg) ~= "table" or not kinds[cfg.type] then
        error("optim.from_config: unknown optimizer " ..
            tostring(type(cfg) == "table" and cfg.type or cfg), 2)
    end
    local opts = {}
    for k, v in pairs(cfg) do if k ~= "type" then opts[k] = v end end
    if type(opts.lr) == "table" then opts.lr = schedules.from_config(opts.lr) end
    return new(cfg.type, params, opts)
end

-- Scales the gradients of params in place so their global L2 norm is at
-- most max_norm (Keras' clip_by_global_norm); returns the norm before.
function optim.clip_grad_norm(params, max_norm)
    local list = params_of("clip_grad_norm", params)
    local grads = {}
    for i, p in ipairs(list) do grads[i] = p.grad end
    local norm = global_norm(grads, #list)
    if norm > max_norm then
        whorl.no_grad(function()
            for i = 1, #list do if grads[i] then grads[i]:mul_(max_norm / norm) end end
        end)
    end
    return norm
end

return optim
