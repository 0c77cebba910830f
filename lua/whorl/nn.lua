-- whorl.nn: modules, layers, initialisers, losses and model summaries.
--
--   local nn = require "whorl.nn"
--   local model = nn.Sequential{
--       nn.Input{shape = {1, 224, 224}},
--       nn.Conv2d(1, 32, 3, {padding = "same", activation = "relu"}),
--       nn.MaxPool2d(2),
--       ...
--   }
--   local y = model(x)                     -- __call runs forward
--   for name, p in model:named_parameters() do ... end   -- "2.weight", ...
--   model:summary()                        -- Keras' table
--   local cfg = model:config()             -- plain data
--   local copy = nn.from_config(cfg)       -- same architecture, new weights
--   copy:load_state_dict(model:state_dict())
--
-- A graph with skip connections is a Module subclass with its own forward:
--   local Block = nn.Module:extend("Block")
--   function Block:__init(c) self.conv = nn.Conv2d(c, c, 3, {padding = "same"}) end
--   function Block:forward(x) return whorl.relu(self.conv(x) + x) end
-- (see docs/nn.md).  Classes are registered by name, so from_config can
-- rebuild them once the script or module that defines them has run; give
-- extend a `module` to have from_config require it.
local base = require "whorl.nn.module"
local containers = require "whorl.nn.containers"
local conv = require "whorl.nn.conv"
local layers = require "whorl.nn.layers"

local nn = {
    Module = base.Module,
    init = require "whorl.nn.initializers",
    losses = require "whorl.losses",
    from_config = base.from_config,
    unique_name = base.unique_name,
    clear_session = base.clear_session,
    is_module = base.is_module,
    layer_types = base.layer_types,
    registered = base.registered,
}

for _, group in ipairs({ containers, conv, layers }) do
    for k, v in pairs(group) do nn[k] = v end
end

-- model:summary{input_shape = {C, H, W}, channels_last = false, ...}: see
-- whorl/nn/summary.lua.  Loaded on first use.
function base.Module:summary(opts)
    return require("whorl.nn.summary").summary(self, opts)
end

return nn
