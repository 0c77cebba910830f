-- Small file helpers the package shares.
--
--   files.exists(path)                 true when path can be opened for reading
--   files.read(path)                   the whole file, or nil and the error
--   files.write_atomic(path, data, who)
--       data: a string or a list of strings.  Written to a temporary file in
--       the same folder, then renamed over path, so a crash mid-write leaves
--       the previous file intact; every failure (open, write, close, rename)
--       removes the temporary file and raises "<who>: ... '<path>': <reason>".
local M = {}

function M.exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

function M.read(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("a")
    f:close()
    return s
end

function M.write_atomic(path, data, who)
    local chunks = type(data) == "table" and data or { data }
    local tmp = string.format("%s.tmp-%d-%d", path, os.time(), math.random(0, 1 << 30))
    local f, err = io.open(tmp, "wb")
    if not f then
        error(string.format("%s: cannot write '%s': %s", who, path, tostring(err)), 0)
    end
    for _, c in ipairs(chunks) do
        local ok, werr = f:write(c)
        if not ok then
            f:close()
            os.remove(tmp)
            error(string.format("%s: writing '%s' failed: %s", who, path, tostring(werr)), 0)
        end
    end
    local ok, cerr = f:close()
    if not ok then
        os.remove(tmp)
        error(string.format("%s: writing '%s' failed: %s", who, path, tostring(cerr)), 0)
    end
    local renamed, rerr = os.rename(tmp, path)
    if not renamed then
        os.remove(tmp)
        error(string.format("%s: cannot move the new file over '%s': %s", who, path,
            tostring(rerr)), 0)
    end
end

return M
