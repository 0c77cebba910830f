-- The Module base class of whorl.nn, the layer registry and Keras-style
-- layer names.
--
-- A class is made with Module:extend(name); instances are plain Lua tables
-- whose metatable is the class.  Sub-modules assigned as fields
-- (self.enc1 = nn.Conv2d(...)) are recorded in assignment order, so
-- parameters() and state_dict() have a stable order; parameters and
-- buffers are registered explicitly (register_parameter/register_buffer).
--
-- Every class is registered under its type name, so nn.from_config can
-- rebuild a model from the plain data config() returns, without the script
-- that first built it.  By default a user class is rebuilt by calling its
-- constructor with the (plain data) arguments it was made with; a class
-- whose constructor takes modules defines config() and
-- Class.from_config(cfg, build), where build(child_cfg, label) rebuilds a
-- child (see tests/nn_spec.lua, "Residual").
local whorl = require "whorl"

local M = {}

local registry = {}   -- type name -> class
local counters = {}   -- name prefix -> how many names were handed out
local naming_suspended = 0

-- Keras' to_snake_case: "MaxPooling2D" -> "max_pooling2d", "ReLU" -> "re_lu".
local function snake_case(name)
    name = name:gsub("[^%w_]", "")
    name = name:gsub("(.)(%u%l+)", "%1_%2")
    name = name:gsub("(%l)(%u)", "%1_%2")
    return name:lower()
end
M.snake_case = snake_case

-- Keras' naming: the first layer of a kind is "conv2d", then "conv2d_1"...
-- Counters live for the process (Keras' session); clear_session resets them.
function M.unique_name(prefix)
    local n = counters[prefix] or 0
    counters[prefix] = n + 1
    if n == 0 then return prefix end
    return prefix .. "_" .. n
end

function M.clear_session()
    for k in pairs(counters) do counters[k] = nil end
end

-- A name restored from a config: later automatic names must not repeat it.
local function note_name(name)
    local prefix, n = name:match("^(.-)_(%d+)$")
    if prefix and prefix ~= "" then
        n = tonumber(n)
        if (counters[prefix] or 0) <= n then counters[prefix] = n + 1 end
    elseif (counters[name] or 0) < 1 then
        counters[name] = 1
    end
end

local function is_module(v)
    if type(v) ~= "table" then return false end
    local mt = getmetatable(v)
    return type(mt) == "table" and rawget(mt, "_is_module_class") == true
end
M.is_module = is_module

local function is_options_table(v)
    return type(v) == "table" and not is_module(v) and getmetatable(v) == nil
end
M.is_options_table = is_options_table

-- Constructor arguments as one table: positional values named by
-- `positional`, then an optional trailing options table (a plain table with
-- no [1], so {3, 3} stays a positional pair).  Option names are checked
-- against `allowed` (plus `name`), so a misspelt option is an error.
function M.options(type_name, positional, allowed, ...)
    local n = select("#", ...)
    local out, npos = {}, n
    local last = n > 0 and select(n, ...) or nil
    if is_options_table(last) and last[1] == nil then
        npos = n - 1
        for k, v in pairs(last) do out[k] = v end
    end
    if npos > #positional then
        error(string.format("%s: %d positional arguments given, at most %d (%s) before the " ..
            "options table", type_name, npos, #positional, table.concat(positional, ", ")), 0)
    end
    for i = 1, npos do
        local k = positional[i]
        if out[k] ~= nil then
            error(string.format("%s: %s given both as argument %d and as an option", type_name, k,
                i), 0)
        end
        out[k] = (select(i, ...))
    end
    local ok = { name = true }
    for _, k in ipairs(allowed) do ok[k] = true end
    for k in pairs(out) do
        if not ok[k] then
            error(string.format("%s: unknown option '%s' (expected %s)", type_name, tostring(k),
                table.concat(allowed, ", ")), 0)
        end
    end
    return out
end

-- A positive integer argument, or an error naming the layer and argument.
function M.check_int(type_name, key, v, min)
    min = min or 1
    local whole = type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
    if not whole or v < min then
        error(string.format("%s: %s must be an integer >= %d, got %s", type_name, key, min,
            tostring(v)), 0)
    end
    return math.tointeger(v)
end

-- A number or {h, w} pair of integers >= min, returned as {h, w}.
function M.check_pair(type_name, key, v, min)
    if type(v) == "number" then
        local x = M.check_int(type_name, key, v, min)
        return { x, x }
    end
    if type(v) == "table" and #v == 2 then
        return { M.check_int(type_name, key, v[1], min), M.check_int(type_name, key, v[2], min) }
    end
    error(string.format("%s: %s must be an integer or a pair {h, w}, got %s", type_name, key,
        type(v)), 0)
end

local function shape_str(t)
    return "[" .. table.concat(t:size(), ", ") .. "]"
end
M.shape_str = shape_str

local function check_name(name, where)
    if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
        error(string.format("%s: a layer name must be a non-empty string without dots, got %s",
            where, type(name) == "string" and string.format("%q", name) or type(name)), 3)
    end
end

-- Errors raised inside a forward are prefixed with the path of layers they
-- went through: "in layer 'sequential' (Sequential) > 'conv2d_3' (Conv2d): ...".
local TAG = "in layer "
local function tag_error(self, err)
    if type(err) ~= "string" then return err end
    local label = string.format("'%s' (%s)", tostring(rawget(self, "name")), self._type)
    if err:sub(1, #TAG) == TAG then return TAG .. label .. " > " .. err:sub(#TAG + 1) end
    return TAG .. label .. ": " .. err
end

local function finish_call(self, ok, out, ...)
    if not ok then error(tag_error(self, out), 0) end
    local hooks = rawget(self, "_forward_hooks")
    if hooks then
        for i = 1, #hooks do
            local replaced = hooks[i](self, out)
            if replaced ~= nil then out = replaced end
        end
    end
    if rawget(self, "retain_output") then rawset(self, "output", out) end
    return out, ...
end

local function call_module(self, ...)
    return finish_call(self, pcall(self.forward, self, ...))
end

local function module_newindex(self, k, v)
    if type(k) == "string" then
        if is_module(v) then
            local keys = rawget(self, "_child_keys")
            local known = false
            for i = 1, #keys do if keys[i] == k then known = true; break end end
            if not known then keys[#keys + 1] = k end
        elseif is_options_table(v) then
            -- A plain list of modules would hide their parameters from
            -- parameters() and state_dict(): refuse it loudly.
            for _, x in pairs(v) do
                if is_module(x) then
                    error(string.format("%s: field '%s' is a plain table holding modules, whose " ..
                        "parameters would be invisible; use nn.ModuleList{...} or nn.Sequential{...}",
                        tostring(self), k), 2)
                end
            end
        end
    end
    rawset(self, k, v)
end

local function module_tostring(self)
    local extra = self:extra_repr()
    if extra ~= "" then extra = ", " .. extra end
    return string.format("%s(%s%s)", self._type, tostring(rawget(self, "name")), extra)
end

local Module = {}

-- Makes the class table for type_name.  spec: keras_type (shown by
-- summary, and the source of the automatic name prefix), prefix, module (a
-- Lua module name that from_config requires when the type is unknown),
-- builtin (a layer of whorl.nn: user classes cannot take its name).
local function define(type_name, parent, spec)
    spec = spec or {}
    if type(type_name) ~= "string" or not type_name:match("^[%a_][%w_]*$") then
        error("extend: the class name must be an identifier-like string, got " ..
            tostring(type_name), 3)
    end
    local old = registry[type_name]
    if old and rawget(old, "_builtin") then
        error(string.format("extend: '%s' is a built-in layer type of whorl.nn; choose another " ..
            "class name", type_name), 3)
    end
    local cls = {
        __index = nil,
        __call = call_module,
        __newindex = module_newindex,
        __tostring = module_tostring,
        __name = type_name,
        _type = type_name,
        _keras_type = spec.keras_type or type_name,
        _module_path = spec.module,
        _is_module_class = true,
        _builtin = spec.builtin or false,
        _parent = parent,
    }
    cls.__index = cls
    cls._prefix = spec.prefix or snake_case(cls._keras_type)
    if parent and parent.__len then cls.__len = parent.__len end
    setmetatable(cls, {
        __index = parent,
        __call = function(c, ...) return M.construct(c, ...) end,
        __tostring = function() return "nn." .. type_name end,
    })
    registry[type_name] = cls
    return cls
end
M.define = define

-- Last argument that is an options table: where a `name` is looked for.
local function trailing_options(...)
    local n = select("#", ...)
    if n == 0 then return nil end
    local last = select(n, ...)
    if is_options_table(last) then return last end
    return nil
end

function M.construct(cls, ...)
    local self = setmetatable({}, cls)
    rawset(self, "_child_keys", {})
    rawset(self, "_param_names", {})
    rawset(self, "_buffer_names", {})
    rawset(self, "training", true)
    rawset(self, "_ctor_args", table.pack(...))
    local opts = trailing_options(...)
    if opts and opts.name ~= nil then
        check_name(opts.name, cls._type)
        rawset(self, "name", opts.name)
    end
    self:__init(...)
    if rawget(self, "name") == nil then
        rawset(self, "name", naming_suspended > 0 and cls._prefix or M.unique_name(cls._prefix))
    end
    return self
end

Module.__index = Module
M.Module = Module

-- Default constructor: user classes override it (and call nothing here).
function Module:__init() end

function Module:extend(type_name, spec)
    if self ~= Module and not rawget(self, "_is_module_class") then
        error("extend: call it on a class, as nn.Module:extend(\"MyNet\")", 2)
    end
    return define(type_name, self, spec)
end

function Module:forward()
    error(string.format("%s has no forward method: define function %s:forward(x) ... end",
        self._type, self._type), 0)
end

function Module:extra_repr() return "" end

-- ---- parameters, buffers, children ------------------------------------------------

function Module:register_parameter(name, t)
    check_name(name, "register_parameter")
    if not whorl.is_tensor(t) then
        error(string.format("register_parameter: '%s' must be a tensor, got %s", name, type(t)), 2)
    end
    if not t.requires_grad and not rawget(self, "_frozen") then t.requires_grad = true end
    local names = self._param_names
    local known = false
    for i = 1, #names do if names[i] == name then known = true end end
    if not known then names[#names + 1] = name end
    rawset(self, name, t)
    return t
end

function Module:register_buffer(name, t)
    check_name(name, "register_buffer")
    if not whorl.is_tensor(t) then
        error(string.format("register_buffer: '%s' must be a tensor, got %s", name, type(t)), 2)
    end
    local names = self._buffer_names
    local known = false
    for i = 1, #names do if names[i] == name then known = true end end
    if not known then names[#names + 1] = name end
    rawset(self, name, t)
    return t
end

-- {{key, module}, ...} in a stable order; containers override it.
function Module:named_children()
    local out = {}
    for _, k in ipairs(self._child_keys) do
        local m = rawget(self, k)
        if is_module(m) then out[#out + 1] = { k, m } end
    end
    return out
end

function Module:children()
    local out = {}
    for i, e in ipairs(self:named_children()) do out[i] = e[2] end
    return out
end

-- Keras' model.layers: the direct children.
function Module:layers() return self:children() end

-- Every module below (and including) self, depth first: {{path, module}}
-- with path "" for self and dotted keys below.
function Module:named_modules()
    local out = {}
    local function walk(m, path)
        out[#out + 1] = { path, m }
        for _, e in ipairs(m:named_children()) do
            walk(e[2], path == "" and e[1] or (path .. "." .. e[1]))
        end
    end
    walk(self, "")
    return out
end

function Module:modules()
    local out = {}
    for i, e in ipairs(self:named_modules()) do out[i] = e[2] end
    return out
end

-- {{dotted name, tensor}} of one kind ("_param_names" or "_buffer_names"),
-- own tensors before those of children; a shared tensor appears once.
local function collect(root, kind)
    local out, seen = {}, {}
    local function walk(m, prefix)
        for _, n in ipairs(m[kind]) do
            local t = rawget(m, n)
            if t ~= nil and not seen[t] then
                seen[t] = true
                out[#out + 1] = { prefix .. n, t }
            end
        end
        for _, e in ipairs(m:named_children()) do walk(e[2], prefix .. e[1] .. ".") end
    end
    walk(root, "")
    return out
end

local function iterate(list)
    local i = 0
    return function()
        i = i + 1
        local e = list[i]
        if e then return e[1], e[2] end
    end
end

-- for name, p in model:named_parameters() do ... end
function Module:named_parameters() return iterate(collect(self, "_param_names")) end
function Module:named_buffers() return iterate(collect(self, "_buffer_names")) end

function Module:parameters()
    local out = {}
    for i, e in ipairs(collect(self, "_param_names")) do out[i] = e[2] end
    return out
end

function Module:parameter_names()
    local out = {}
    for i, e in ipairs(collect(self, "_param_names")) do out[i] = e[1] end
    return out
end

function Module:buffers()
    local out = {}
    for i, e in ipairs(collect(self, "_buffer_names")) do out[i] = e[2] end
    return out
end

function Module:count_params()
    local n = 0
    for _, p in ipairs(self:parameters()) do n = n + p:numel() end
    return n
end

-- ---- modes -----------------------------------------------------------------------

function Module:train(mode)
    if mode == nil then mode = true end
    for _, m in ipairs(self:modules()) do rawset(m, "training", mode and true or false) end
    return self
end

function Module:eval() return self:train(false) end

-- Keras' layer.trainable = False: the parameters stop requiring grad (an
-- optimizer skips them) and summary counts them as non-trainable.
function Module:freeze()
    for _, m in ipairs(self:modules()) do
        rawset(m, "_frozen", true)
        for _, n in ipairs(m._param_names) do
            local p = rawget(m, n)
            if p then p.requires_grad = false end
        end
    end
    return self
end

function Module:unfreeze()
    for _, m in ipairs(self:modules()) do
        rawset(m, "_frozen", nil)
        for _, n in ipairs(m._param_names) do
            local p = rawget(m, n)
            if p then p.requires_grad = true end
        end
    end
    return self
end

-- Drops the gradients (PyTorch's set_to_none: the next backward allocates
-- fresh ones instead of adding to stale values).
function Module:zero_grad()
    for _, p in ipairs(self:parameters()) do p.grad = nil end
    return self
end

local DTYPES = { float32 = "float32", float = "float32", float64 = "float64", double = "float64" }

-- Replaces every parameter and buffer by convert(t) (under no_grad),
-- keeping requires_grad; layers that record a dtype for their config get
-- the new one.
local function convert_all(self, convert, dtype)
    whorl.no_grad(function()
        for _, m in ipairs(self:modules()) do
            for _, kind in ipairs({ "_param_names", "_buffer_names" }) do
                for _, n in ipairs(m[kind]) do
                    local t = rawget(m, n)
                    if t then
                        local c = convert(t):detach()
                        if c ~= t then
                            if kind == "_param_names" and t.requires_grad then
                                c.requires_grad = true
                            end
                            rawset(m, n, c)
                        end
                    end
                end
            end
            if dtype and type(rawget(m, "dtype")) == "string" then rawset(m, "dtype", dtype) end
        end
    end)
end

-- Converts every parameter and buffer to a dtype ("float32", "float64"),
-- or moves it to a device.  New tensors replace the old ones: build the
-- optimizer afterwards, as in PyTorch.  "cpu" is the device of this build;
-- another one is handed to the tensors' own t:to(device), which errors
-- until a GPU backend provides it.
function Module:to(target)
    local dtype = DTYPES[target]
    if dtype then
        convert_all(self, function(t)
            if t:dtype() == dtype then return t end
            return t:to(dtype)
        end, dtype)
        return self
    end
    if type(target) ~= "string" then
        error("to: expected a device ('cpu') or a dtype (float32, float64), got " .. type(target), 2)
    end
    local all_there = true
    for _, e in ipairs(self:named_state()) do all_there = all_there and e[2].device == target end
    if all_there then return self end
    local ok, err = pcall(convert_all, self, function(t) return t:to(target) end)
    if not ok then
        error(string.format("to: cannot move %s to '%s' (devices: 'cpu'; a GPU device needs " ..
            "whorl's GPU backend; dtypes: float32, float64): %s", tostring(self), target,
            tostring(err)), 2)
    end
    return self
end

-- ---- hooks and lookup ------------------------------------------------------------

-- fn(module, output) runs after each forward; a non-nil return replaces the
-- output.  Returns a handle whose remove() takes the hook away.
function Module:register_forward_hook(fn)
    if type(fn) ~= "function" then
        error("register_forward_hook: expected a function(module, output)", 2)
    end
    local hooks = rawget(self, "_forward_hooks")
    if not hooks then
        hooks = {}
        rawset(self, "_forward_hooks", hooks)
    end
    hooks[#hooks + 1] = fn
    local module = self
    return {
        remove = function()
            local list = rawget(module, "_forward_hooks")
            if not list then return end
            for i = #list, 1, -1 do if list[i] == fn then table.remove(list, i) end end
            if #list == 0 then rawset(module, "_forward_hooks", nil) end
        end,
    }
end

-- The layer called `name` anywhere below self (Keras' get_layer), or the
-- i-th direct child for a number.
function Module:get(key)
    if type(key) == "number" then
        local layers = self:layers()
        local m = layers[key]
        if not m then
            error(string.format("get: %s has %d layers, no layer %d", tostring(self), #layers, key), 2)
        end
        return m
    end
    if type(key) ~= "string" then error("get: expected a layer name or an index", 2) end
    local found, names = nil, {}
    for _, e in ipairs(self:named_modules()) do
        local m = e[2]
        if m ~= self then names[#names + 1] = m.name end
        if m ~= self and m.name == key then
            if found then
                error(string.format("get: two layers of %s are named '%s'", tostring(self), key), 2)
            end
            found = m
        end
    end
    if not found then
        if #names > 30 then names = { table.unpack(names, 1, 30) }; names[31] = "..." end
        error(string.format("get: no layer named '%s' in %s (layers: %s)", key, tostring(self),
            table.concat(names, ", ")), 2)
    end
    return found
end

-- ---- state -------------------------------------------------------------------------

-- The tensors that make the model's state: {{name, tensor, kind}} with kind
-- "parameter" or "buffer", in a stable order (each module's parameters,
-- then its buffers, then its children).  The tensors are the live ones.
function Module:named_state()
    local out = {}
    local function walk(m, prefix)
        for _, n in ipairs(m._param_names) do
            local t = rawget(m, n)
            if t ~= nil then out[#out + 1] = { prefix .. n, t, "parameter" } end
        end
        for _, n in ipairs(m._buffer_names) do
            local t = rawget(m, n)
            if t ~= nil then out[#out + 1] = { prefix .. n, t, "buffer" } end
        end
        for _, e in ipairs(m:named_children()) do walk(e[2], prefix .. e[1] .. ".") end
    end
    walk(self, "")
    return out
end

-- name -> tensor (the live tensors), and the names in order.
function Module:state_dict()
    local sd, keys = {}, {}
    for i, e in ipairs(self:named_state()) do
        sd[e[1]] = e[2]
        keys[i] = e[1]
    end
    return sd, keys
end

local function list_or_none(t)
    table.sort(t)
    return table.concat(t, ", ")
end

-- Copies the tensors of sd into the model.  Everything is checked before
-- anything is copied: unexpected or missing names (unless strict = false),
-- entries that are not tensors and shapes that differ are reported together.
-- dtypes are converted.  Returns {missing = {...}, unexpected = {...}}.
function Module:load_state_dict(sd, opts)
    if type(sd) ~= "table" then
        error("load_state_dict: expected a table of name -> tensor, got " .. type(sd), 2)
    end
    local strict = not (opts and opts.strict == false)
    local own, keys = self:state_dict()
    local missing, unexpected, bad, mismatch = {}, {}, {}, {}
    for k, v in pairs(sd) do
        if type(k) ~= "string" then
            bad[#bad + 1] = string.format("key %s is not a string", tostring(k))
        elseif own[k] == nil then
            unexpected[#unexpected + 1] = k
        elseif not whorl.is_tensor(v) then
            bad[#bad + 1] = string.format("%s is a %s, not a tensor", k, type(v))
        end
    end
    for _, k in ipairs(keys) do
        local v = sd[k]
        if v == nil then
            missing[#missing + 1] = k
        elseif whorl.is_tensor(v) then
            local a, b = own[k]:size(), v:size()
            local same = #a == #b
            for d = 1, #a do same = same and a[d] == b[d] end
            if not same then
                mismatch[#mismatch + 1] = string.format("%s: model has %s, given %s", k,
                    shape_str(own[k]), shape_str(v))
            end
        end
    end
    local problems = {}
    if strict and #missing > 0 then problems[#problems + 1] = "missing: " .. list_or_none(missing) end
    if strict and #unexpected > 0 then
        problems[#problems + 1] = "unexpected: " .. list_or_none(unexpected)
    end
    if #bad > 0 then problems[#problems + 1] = "not tensors: " .. list_or_none(bad) end
    if #mismatch > 0 then problems[#problems + 1] = "shape mismatch: " .. list_or_none(mismatch) end
    if #problems > 0 then
        error(string.format("load_state_dict into %s: %s", tostring(self),
            table.concat(problems, "; ")), 2)
    end
    whorl.no_grad(function()
        for _, k in ipairs(keys) do
            if sd[k] ~= nil then own[k]:copy_(sd[k]) end
        end
    end)
    return { missing = missing, unexpected = unexpected }
end

-- ---- configs -------------------------------------------------------------------------

-- A deep copy of v made of numbers, strings, booleans and tables with
-- string or integer keys; anything else is an error naming where it was.
local function plain_copy(v, where)
    local tv = type(v)
    if tv == "number" or tv == "string" or tv == "boolean" or tv == "nil" then return v end
    if tv ~= "table" or not is_options_table(v) then
        error(string.format("config: %s is a %s; a config holds plain data only (numbers, " ..
            "strings, booleans, tables)", where, is_module(v) and "module" or tv), 0)
    end
    local out = {}
    for k, x in pairs(v) do
        if type(k) ~= "string" and math.type(k) ~= "integer" then
            error(string.format("config: %s has a key of type %s", where, type(k)), 0)
        end
        out[k] = plain_copy(x, where .. "." .. tostring(k))
    end
    return out
end
M.plain_copy = plain_copy

-- The arguments to rebuild this module with.  Built-in layers override it;
-- for user classes it is the constructor's arguments, which must then be
-- plain data (define config_args to describe a module otherwise).
function Module:config_args()
    local a = rawget(self, "_ctor_args")
    local out = { n = a.n }
    for i = 1, a.n do out[i] = plain_copy(a[i], string.format("argument %d of %s", i, self._type)) end
    return out
end

-- The architecture as plain data: {type, name, args = {...}} (and for user
-- classes the names of the layers their constructor makes, and the Lua
-- module that defines them).  nn.from_config(cfg) rebuilds the model.
function Module:config()
    local args = self:config_args()
    local cfg = { type = self._type, name = self.name, nargs = args.n or #args }
    args.n = nil
    cfg.args = args
    if self._module_path then cfg.module = self._module_path end
    if not rawget(getmetatable(self), "_builtin") then
        -- The constructor makes the children again; this restores their names.
        local names = {}
        for _, e in ipairs(self:named_modules()) do
            if e[1] ~= "" then names[e[1]] = e[2].name end
        end
        if next(names) then cfg.names = names end
    end
    return cfg
end

function M.registered(type_name) return registry[type_name] end

function M.layer_types()
    local out = {}
    for k in pairs(registry) do out[#out + 1] = k end
    table.sort(out)
    return out
end

local function find_path(root, path)
    local m = root
    for key in path:gmatch("[^.]+") do
        local nxt
        for _, e in ipairs(m:named_children()) do
            if e[1] == key then nxt = e[2]; break end
        end
        if not nxt then return nil end
        m = nxt
    end
    return m
end

local function build(cfg, where)
    if type(cfg) ~= "table" or type(cfg.type) ~= "string" then
        error(string.format("from_config: %s is not a layer config (a table with a string 'type')",
            where), 0)
    end
    local cls = registry[cfg.type]
    if not cls and type(cfg.module) == "string" then
        local ok, err = pcall(require, cfg.module)
        if not ok then
            error(string.format("from_config: %s: layer type '%s' is defined by Lua module '%s', " ..
                "which failed to load: %s", where, cfg.type, cfg.module, tostring(err)), 0)
        end
        cls = registry[cfg.type]
    end
    if not cls then
        error(string.format("from_config: %s: unknown layer type '%s'; define the class " ..
            "(nn.Module:extend(\"%s\", {module = ...})) before loading (known types: %s)",
            where, cfg.type, cfg.type, table.concat(M.layer_types(), ", ")), 0)
    end
    local m
    if rawget(cls, "from_config") then
        m = cls.from_config(cfg, function(c, w) return build(c, where .. "." .. w) end)
    else
        local args = cfg.args or {}
        m = cls(table.unpack(args, 1, cfg.nargs or #args))
    end
    if cfg.name ~= nil then
        check_name(cfg.name, "from_config")
        rawset(m, "name", cfg.name)
        note_name(cfg.name)
    end
    if type(cfg.names) == "table" then
        for path, name in pairs(cfg.names) do
            local sub = find_path(m, path)
            if sub then
                rawset(sub, "name", name)
                note_name(name)
            end
        end
    end
    return m
end

-- Rebuilds a module from config().  The weights are freshly initialised
-- (load a state_dict next); the global random generator is left as it was.
function M.from_config(cfg)
    local rng = whorl.get_rng_state()
    naming_suspended = naming_suspended + 1
    local ok, m = pcall(build, cfg, "config")
    naming_suspended = naming_suspended - 1
    whorl.set_rng_state(rng)
    if not ok then error(m, 2) end
    return m
end

return M
