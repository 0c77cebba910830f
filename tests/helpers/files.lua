-- Whole-file reads and writes for specs (binary, errors raised on failure).
--   local files = require "helpers.files"
--   files.spit(path, bytes); local bytes = files.slurp(path)
local M = {}

function M.slurp(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

function M.spit(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

-- True when two modules' state dicts are byte-identical; else false and the
-- first key that differs.
function M.same_state(a, b)
    local sa, keys = a:state_dict()
    local sb = b:state_dict()
    for _, k in ipairs(keys) do
        if sa[k]:bytes() ~= sb[k]:bytes() then return false, k end
    end
    return true
end

return M
