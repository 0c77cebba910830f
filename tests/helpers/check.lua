-- Assertions the specs share.
--   local check = require "helpers.check"
--   check.max_diff(a, b)               largest absolute difference of two tensors
--   check.raises(fn, "part", ...)      fn must fail, its message containing every part;
--                                      returns that message
local assert = require "luassert"

local M = {}

function M.max_diff(a, b) return (a - b):abs():max():item() end

function M.raises(fn, ...)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    err = tostring(err)
    for _, want in ipairs{ ... } do
        assert.matches(want, err, 1, true, string.format("error %q lacks %q", err, want))
    end
    return err
end

return M
