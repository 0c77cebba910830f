-- The whorl package: `local whorl = require "whorl"`.
--
-- The C module whorl.core provides tensors, ops and autograd (its own
-- comments list them); this file adds the helpers that are easier in Lua.
-- The module table is whorl.core's table itself, so functions that other
-- bindings add to it appear here too.
local core = require "whorl.core"

local whorl = core

local function restore_after(previous, ok, ...)
    core.set_grad_enabled(previous)
    if not ok then error((...), 0) end
    return ...
end

-- Runs fn(...) with gradient recording off and returns its results; the
-- previous mode comes back even when fn raises.
function whorl.no_grad(fn, ...)
    local previous = core.set_grad_enabled(false)
    return restore_after(previous, pcall(fn, ...))
end

-- The opposite, for recording inside a no_grad region.
function whorl.enable_grad(fn, ...)
    local previous = core.set_grad_enabled(true)
    return restore_after(previous, pcall(fn, ...))
end

-- Same as whorl.no_grad when enabled is false (PyTorch's set_grad_enabled as
-- a context), for code that chooses the mode at run time.
function whorl.with_grad_enabled(enabled, fn, ...)
    local previous = core.set_grad_enabled(enabled and true or false)
    return restore_after(previous, pcall(fn, ...))
end

-- Releases every tensor given now instead of at the next collection.
function whorl.close(...)
    for i = 1, select("#", ...) do
        local t = select(i, ...)
        if core.is_tensor(t) then t:close() end
    end
end

whorl.version = "0.1.0"

-- Training and complete checkpoints (whorl/trainer.lua, whorl/checkpoint.lua),
-- loaded on first use: they need whorl.nn, which needs this file first.
function whorl.fit(args) return require("whorl.trainer").fit(args) end
function whorl.evaluate(...) return require("whorl.trainer").evaluate(...) end
function whorl.predict(...) return require("whorl.trainer").predict(...) end
function whorl.save(...) return require("whorl.checkpoint").save(...) end
function whorl.load(...) return require("whorl.checkpoint").load(...) end

-- Datasets (lua/whorl/data.lua); whorl.image comes from the C module.
whorl.data = require "whorl.data"

return whorl
