-- Containers: Sequential (a chain of layers) and ModuleList (a list that
-- only holds modules, for user forwards that loop over blocks).
--
--   nn.Sequential{layer1, layer2, ..., name = "encoder"}
--   nn.Sequential(layer1, layer2, ...)
--   nn.Sequential():add(layer1):add(layer2)
-- Children are keyed by position ("1", "2", ...), so state_dict names such
-- as "3.weight" do not depend on the automatic layer names of a session.
local base = require "whorl.nn.module"

local Module, define, is_module = base.Module, base.define, base.is_module

local function collect_layers(type_name, ...)
    local n = select("#", ...)
    local list = {}
    local first = ...
    if n == 1 and base.is_options_table(first) then
        for k in pairs(first) do
            if k ~= "name" and math.type(k) ~= "integer" then
                error(string.format("%s: unknown option '%s' (expected layers and name)",
                    type_name, tostring(k)), 4)
            end
        end
        for i = 1, #first do list[i] = first[i] end
    else
        for i = 1, n do
            local v = select(i, ...)
            if not (i == n and base.is_options_table(v)) then list[#list + 1] = v end
        end
    end
    for i, m in ipairs(list) do
        if not is_module(m) then
            error(string.format("%s: entry %d is a %s, not a layer", type_name, i, type(m)), 4)
        end
    end
    return list
end

local function list_children(self)
    local out = {}
    for i, m in ipairs(self.modules_list) do out[i] = { tostring(i), m } end
    return out
end

local function list_config(self)
    local layers = {}
    for i, m in ipairs(self.modules_list) do layers[i] = m:config() end
    return { type = self._type, name = self.name, layers = layers }
end

local function list_from_config(cls)
    return function(cfg, build)
        local layers = {}
        for i, c in ipairs(cfg.layers or {}) do layers[i] = build(c, "layers[" .. i .. "]") end
        return cls(layers)
    end
end

local function list_add(self, m)
    if not is_module(m) then
        error(string.format("%s:add: expected a layer, got %s", self._type, type(m)), 2)
    end
    local list = self.modules_list
    list[#list + 1] = m
    return self
end

local function list_repr(self)
    local lines = { string.format("%s(%s) {", self._type, self.name) }
    for i, m in ipairs(self.modules_list) do
        local s = tostring(m):gsub("\n", "\n  ")
        lines[#lines + 1] = string.format("  (%d): %s", i, s)
    end
    lines[#lines + 1] = "}"
    return table.concat(lines, "\n")
end

-- ---- Sequential ------------------------------------------------------------------

local Sequential = define("Sequential", Module, { builtin = true })

function Sequential:__init(...)
    rawset(self, "modules_list", collect_layers("Sequential", ...))
end

Sequential.add = list_add
Sequential.named_children = list_children
Sequential.config = list_config
Sequential.from_config = list_from_config(Sequential)
Sequential.__tostring = list_repr
Sequential.__len = function(self) return #self.modules_list end

function Sequential:forward(x, ...)
    local list = self.modules_list
    local n = #list
    if n == 0 then return x end
    local out = list[1](x, ...)
    for i = 2, n do out = list[i](out) end
    return out
end

-- ---- ModuleList ------------------------------------------------------------------

local ModuleList = define("ModuleList", Module, { builtin = true })

function ModuleList:__init(...)
    rawset(self, "modules_list", collect_layers("ModuleList", ...))
end

ModuleList.add = list_add
ModuleList.named_children = list_children
ModuleList.config = list_config
ModuleList.from_config = list_from_config(ModuleList)
ModuleList.__tostring = list_repr
ModuleList.__len = function(self) return #self.modules_list end
ModuleList.__index = function(self, k)
    if math.type(k) == "integer" then return rawget(self, "modules_list")[k] end
    return ModuleList[k]
end

function ModuleList:forward()
    error("a ModuleList holds layers but has no forward; call its entries from your forward", 0)
end

return { Sequential = Sequential, ModuleList = ModuleList }
