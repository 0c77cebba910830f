-- The garbage collector must see tensor memory: a Lua tensor is a few
-- bytes of userdata in front of megabytes of C storage, and without the
-- binding's pacing (whorl_core.c) the loops below would hold gigabytes.
local whorl = require "whorl"

local MB = 1024 * 1024

local function rss_bytes()
    for line in io.lines("/proc/self/status") do
        local kb = line:match("^VmRSS:%s+(%d+)%s+kB")
        if kb then return tonumber(kb) * 1024 end
    end
    error("no VmRSS in /proc/self/status")
end

local function settle()
    collectgarbage()
    collectgarbage()
end

-- Runs body(i) for i = 1..n after a full collection and asserts that
-- neither RSS nor the live bytes grew by `limit` bytes or more (live bytes
-- sampled every `every` iterations); returns the live bytes at the start.
local function assert_flat(n, every, limit, what, body)
    settle()
    local rss0, live0 = rss_bytes(), whorl.memory_stats().live_bytes
    local max_live = live0
    for i = 1, n do
        body(i)
        if i % every == 0 then max_live = math.max(max_live, whorl.memory_stats().live_bytes) end
    end
    local grown = rss_bytes() - rss0
    assert.is_true(grown < limit, string.format("%s: RSS grew by %.0f MB", what, grown / MB))
    assert.is_true(max_live - live0 < limit,
        string.format("%s: live bytes reached %.0f MB", what, (max_live - live0) / MB))
    return live0
end

describe("garbage collection of tensors", function()
    it("keeps 100,000 temporary 1 MB tensors flat in memory", function()
        local live0 = assert_flat(100000, 1000, 200 * MB, "1 MB tensors", function(i)
            local t = whorl.empty(MB // 4) -- 1 MB of float32
            -- Writing one element faults in a page, so a leak would show in
            -- RSS (4 kB a tensor, 400 MB in all) as well as in live bytes.
            t:set(1 + (i % 1000), i)
        end)
        settle()
        assert.is_true(whorl.memory_stats().live_bytes - live0 < MB)
    end)

    it("keeps fully written 1 MB tensors flat in resident memory", function()
        settle()
        local rss0 = rss_bytes()
        for _ = 1, 5000 do
            local t = whorl.zeros(MB // 4) -- memset writes every page: 5 GB if kept
        end
        local grown = rss_bytes() - rss0
        assert.is_true(grown < 200 * MB, string.format("RSS grew by %.0f MB", grown / MB))
    end)

    it("returns live bytes to the start value after collectgarbage()", function()
        settle()
        local live0 = whorl.memory_stats().live_bytes
        local keep = {}
        for i = 1, 20 do keep[i] = whorl.rand(256, 256) end
        local x = whorl.randn(64, 64, { requires_grad = true })
        local y = (x * x + x:exp()):sum() -- graph nodes hold saved tensors
        y:backward()
        assert.is_true(whorl.memory_stats().live_bytes > live0 + 20 * 256 * 256 * 4)
        keep, x, y = nil, nil, nil
        settle()
        assert.equal(live0, whorl.memory_stats().live_bytes)
    end)

    it("costs no extra collections in a loop of small tensors", function()
        local a, b = whorl.rand(1000), whorl.rand(1000)
        settle()
        local before = whorl.memory_stats()
        for _ = 1, 20000 do
            local c = a * b + a -- 2 temporaries of 4 kB: 160 MB allocated in all
            c = nil
        end
        local after = whorl.memory_stats()
        -- one full collection per 64 MB (the floor) allocated, at most
        assert.is_true(after.gc_collections - before.gc_collections <= 3,
            string.format("%d full collections", after.gc_collections - before.gc_collections))
    end)

    it("reports its figures", function()
        local s = whorl.memory_stats()
        for _, k in ipairs({ "live_bytes", "peak_bytes", "gc_collections", "gc_threshold" }) do
            assert.equal("number", type(s[k]), k)
        end
        assert.is_true(s.peak_bytes >= s.live_bytes)
        assert.is_true(s.gc_threshold >= 64 * MB)
        whorl.empty_cache() -- frees the allocator's cached blocks; must not disturb live tensors
        local t = whorl.ones(MB)
        whorl.empty_cache()
        assert.equal(1, t[MB])
    end)
end)

describe("garbage collection of other C memory", function()
    it("keeps canvases left open (4 MB of pixels each) flat in memory", function()
        -- painted white, so every page is touched: 1.2 GB if kept
        local live0 = assert_flat(300, 1, 300 * MB, "canvases", function() whorl.plot.canvas(1024, 1024) end)
        settle()
        assert.equal(live0, whorl.memory_stats().live_bytes)
        -- closed by hand: the bytes go at once
        local c = whorl.plot.canvas(512, 512)
        assert.is_true(whorl.memory_stats().live_bytes >= live0 + 512 * 512 * 4)
        c:close()
        assert.equal(live0, whorl.memory_stats().live_bytes)
    end)

    it("counts match cylinders while they are held and frees them with close or the collector", function()
        local fp = whorl.fingerprint
        local minutiae = {}
        for k = 1, 40 do
            minutiae[k] = { x = 20 + (k * 37) % 200, y = 20 + (k * 53) % 200, angle = k * 0.7, type = "ending",
                quality = 1 }
        end
        local template = { minutiae = minutiae, width = 256, height = 256 }
        settle()
        local live0 = whorl.memory_stats().live_bytes
        local c = fp.mcc(template)
        local held = whorl.memory_stats().live_bytes - live0
        assert.is_true(#c > 10 and held > #c * 1000, string.format("%d cylinders, %d bytes noted", #c, held))
        c:close()
        assert.equal(live0, whorl.memory_stats().live_bytes)
        -- 2000 sets of cylinders left to the collector: 230 MB if kept
        assert_flat(2000, 1, 150 * MB, "cylinders", function() fp.mcc(template) end)
        settle()
        assert.equal(live0, whorl.memory_stats().live_bytes)
    end)
end)
