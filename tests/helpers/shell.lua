-- Child processes and scratch folders for specs that run bin/whorl.
--   local shell = require "helpers.shell"
--   local dir = shell.tmpdir()
--   local out, code = shell.run(shell.whorl() .. "synth --out " .. dir)   -- stdout+stderr, exit code
--   shell.exists(path); shell.remove(dir)
local M = {}

function M.tmpdir()
    local p = io.popen("mktemp -d")
    local d = p:read("l")
    p:close()
    return d
end

function M.remove(dir) os.execute("rm -rf '" .. dir:gsub("'", "'\\''") .. "'") end

-- Runs a shell command; returns its output (stdout and stderr) and exit code.
function M.run(cmd)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("a")
    local ok, _, code = p:close()
    return out, ok and 0 or code
end

function M.exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

-- The command prefix that starts bin/whorl with this process's module
-- paths (a sanitizer build's LUA_CPATH reaches the child too).
function M.whorl()
    return string.format("LUA_PATH='%s' LUA_CPATH='%s' OMP_WAIT_POLICY=passive lua5.4 bin/whorl ",
        os.getenv("LUA_PATH") or "", os.getenv("LUA_CPATH") or "")
end

return M
