-- README.md's Lua example must keep working: this spec extracts the first
-- ```lua block, runs it with print captured and checks that it trained.
describe("README.md's first Lua example", function()
    it("runs and lowers its loss", function()
        local f = assert(io.open("README.md", "r"))
        local text = f:read("a")
        f:close()
        local code = text:match("```lua\n(.-)```")
        assert.is_truthy(code, "README.md has no ```lua block")
        local lines = {}
        local env = setmetatable({print = function(s) lines[#lines + 1] = s end}, {__index = _G})
        local chunk = assert(load(code, "README example", "t", env))
        chunk()
        assert.is_true(#lines >= 2, "the example printed " .. #lines .. " lines")
        local first = tonumber(lines[1]:match("loss ([%d%.]+)"))
        local last = tonumber(lines[#lines]:match("loss ([%d%.]+)"))
        assert.is_true(first ~= nil and last ~= nil and last < first,
            ("loss went from %s to %s"):format(tostring(first), tostring(last)))
    end)
end)
