-- Reading the JSON reference fixtures under tests/fixtures/ (written by the
-- make_*_reference.py scripts beside them) and comparing tensors with them.
--
--   local fixtures = require "helpers.fixtures"
--   local cases = fixtures.load("nn_reference.json")      -- doc.cases
--   local t = fixtures.tensor(case.input, "float64", true)  -- {shape, data} -> tensor
--   fixtures.assert_close(t, case.output, 1e-5, "max_pool2d output")
local whorl = require "whorl"
local cjson = require "cjson"
local gradcheck = require "helpers.gradcheck"

local M = {}

local DIR = (debug.getinfo(1, "S").source:match("^@(.*/)helpers/") or "tests/") .. "fixtures/"

function M.load(name)
    local f = assert(io.open(DIR .. name, "r"))
    local doc = cjson.decode(f:read("a"))
    f:close()
    return doc.cases
end

-- A tensor from a fixture entry {shape, data}; map (optional) rewrites values.
function M.tensor(e, dtype, requires_grad, map)
    local function nest(dim, pos)
        if dim > #e.shape then
            local v = e.data[pos]
            return map and map(v) or v, pos + 1
        end
        local t = {}
        for i = 1, e.shape[dim] do t[i], pos = nest(dim + 1, pos) end
        return t, pos
    end
    local t = whorl.tensor((nest(1, 1)), { dtype = dtype or "float64" })
    if requires_grad then t.requires_grad = true end
    return t
end

-- Raises unless t has the fixture's shape and values within tol (absolute
-- plus relative to the reference).
function M.assert_close(t, e, tol, what)
    local size = t:size()
    assert(#size == #e.shape, string.format("%s: %d dims, reference has %d", what, #size, #e.shape))
    for d = 1, #size do
        assert(size[d] == e.shape[d], string.format("%s: shape %s, reference %s", what,
            table.concat(size, "x"), table.concat(e.shape, "x")))
    end
    local v = gradcheck.flat(t)
    for k = 1, #e.data do
        local diff = math.abs(v[k] - e.data[k])
        if not (diff <= tol * (1 + math.abs(e.data[k]))) then
            error(string.format("%s: element %d is %.12g, reference %.12g", what, k, v[k], e.data[k]), 2)
        end
    end
end

return M
