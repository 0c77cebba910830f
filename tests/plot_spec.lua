-- whorl.plot: the cairo canvas draws what it is asked where it is asked
-- (checked by reading the saved PNG back with whorl.image.read), colour maps
-- give the published values, the Pareto front of a hand-made point set, the
-- figures write PNGs of the requested size holding their elements, and bad
-- arguments give errors naming the argument.
local whorl = require "whorl"
local plot = require "whorl.plot"

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p " .. TMP))

local function path(name) return TMP .. "/" .. name end

-- The saved PNG as rgb[y][x] = {r, g, b} (1-based) in [0,1], and its size.
local function pixels(file)
    local t = whorl.image.read(file, { grey = false })
    local c = t:totable()
    local h, w = t:size(2), t:size(3)
    local rgb = {}
    for y = 1, h do
        rgb[y] = {}
        for x = 1, w do rgb[y][x] = { c[1][y][x], c[2][y][x], c[3][y][x] } end
    end
    return rgb, w, h
end

local function near(p, r, g, b, tol)
    tol = tol or 0.02
    return math.abs(p[1] - r) <= tol and math.abs(p[2] - g) <= tol and math.abs(p[3] - b) <= tol
end

-- Pixels of rgb inside the box (x0..x1, y0..y1, 1-based inclusive) that satisfy pred.
local function count(rgb, pred, x0, y0, x1, y1)
    local n = 0
    x0, y0 = x0 or 1, y0 or 1
    y1, x1 = y1 or #rgb, x1 or #rgb[1]
    for y = y0, y1 do
        for x = x0, x1 do
            if pred(rgb[y][x]) then n = n + 1 end
        end
    end
    return n
end

local function dark(p) return p[1] + p[2] + p[3] < 1.5 end

local function assert_error_with(fragment, fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error mentioning " .. fragment)
    assert.truthy(tostring(err):find(fragment, 1, true),
        "the error does not mention '" .. fragment .. "': " .. tostring(err))
end

local function list_dir(dir)
    local names, p = {}, io.popen("ls -A '" .. dir .. "'")
    for n in p:lines() do names[#names + 1] = n end
    p:close()
    return names
end

describe("plot.canvas", function()
    it("fills a red rectangle exactly where asked on a white canvas", function()
        local c = plot.canvas(40, 30)
        c:color(1, 0, 0)
        c:rect(10, 5, 20, 10)
        c:save(path("rect.png"))
        local rgb, w, h = pixels(path("rect.png"))
        assert.are.equal(40, w)
        assert.are.equal(30, h)
        local red = function(p) return near(p, 1, 0, 0) end
        assert.are.equal(20 * 10, count(rgb, red))
        assert.are.equal(20 * 10, count(rgb, red, 11, 6, 30, 15))
        assert.is_true(near(rgb[1][1], 1, 1, 1))
        assert.is_true(near(rgb[30][40], 1, 1, 1))
    end)

    it("strokes outlines, lines, polylines and circles", function()
        local c = plot.canvas(60, 60)
        c:color(0, 0, 1)
        c:line(0, 10.5, 60, 10.5, 1) -- a pixel-aligned horizontal line: row 11
        c:rect(20, 20, 20, 20, false, 2)
        c:polyline({ 5, 50, 25, 50, 25, 55 }, 1)
        c:circle(50, 50, 5)
        c:save(path("strokes.png"))
        local rgb = pixels(path("strokes.png"))
        local blue = function(p) return p[3] > 0.9 and p[1] < 0.5 end
        assert.are.equal(60, count(rgb, blue, 1, 11, 60, 11))
        assert.are.equal(0, count(rgb, blue, 1, 12, 60, 18))
        assert.is_true(count(rgb, blue, 19, 19, 41, 41) > 70)           -- the outline
        assert.are.equal(0, count(rgb, blue, 24, 24, 36, 36))          -- not filled
        assert.is_true(near(rgb[50][50], 0, 0, 1, 0.05))               -- the disc's centre
    end)

    it("draws text as dark pixels within its measured box, aligned as asked", function()
        local c = plot.canvas(200, 60)
        c:color(0, 0, 0)
        local adv = c:text(100, 30, "Whorl", { size = 20, align = "center", valign = "middle" })
        local w, ascent, descent = c:measure("Whorl", { size = 20 })
        assert.are.equal(w, adv)
        assert.is_true(w > 30 and w < 100)
        assert.is_true(ascent > 10 and descent > 0)
        c:save(path("text.png"))
        local rgb = pixels(path("text.png"))
        local x0, x1 = math.floor(100 - w / 2), math.ceil(100 + w / 2)
        local inside = count(rgb, dark, x0, 10, x1, 50)
        assert.is_true(inside > 50, "dark pixels in the text box: " .. inside)
        assert.are.equal(inside, count(rgb, dark))
        -- centred: as much ink left of the centre as right of it, within 25%
        local left, right = count(rgb, dark, 1, 1, 100, 60), count(rgb, dark, 101, 1, 200, 60)
        assert.is_true(math.abs(left - right) < 0.25 * inside)
    end)

    it("rotates text and makes bold text darker", function()
        local c = plot.canvas(60, 200)
        c:color(0, 0, 0)
        c:text(30, 100, "vertical", { size = 14, rotate = -math.pi / 2, align = "center", valign = "middle" })
        c:save(path("rotated.png"))
        local rgb = pixels(path("rotated.png"))
        assert.are.equal(count(rgb, dark), count(rgb, dark, 15, 40, 45, 160))
        local function ink(bold)
            local k = plot.canvas(120, 40)
            k:color(0, 0, 0)
            k:text(5, 30, "ridge", { size = 20, bold = bold })
            k:save(path("bold.png"))
            return count(pixels(path("bold.png")), dark)
        end
        assert.is_true(ink(true) > ink(false) * 1.15)
    end)

    it("draws a grey tensor enlarged with nearest neighbour: pixel-exact blocks", function()
        local t = whorl.tensor({ { 0, 1 }, { 1, 0.5 } })
        local c = plot.canvas(30, 30)
        c:image(t, 5, 5, 20, 20)
        c:save(path("image.png"))
        local rgb = pixels(path("image.png"))
        assert.are.equal(100, count(rgb, function(p) return near(p, 0, 0, 0) end))
        assert.are.equal(100, count(rgb, function(p) return near(p, 0, 0, 0) end, 6, 6, 15, 15))
        assert.are.equal(100, count(rgb, function(p) return near(p, 0.5, 0.5, 0.5) end, 16, 16, 25, 25))
        assert.is_true(near(rgb[6][16], 1, 1, 1) and near(rgb[16][6], 1, 1, 1))
    end)

    it("draws RGB tensors (3,H,W), uint8 images and blends with alpha", function()
        local rgbt = whorl.tensor({ { { 0, 0 }, { 0, 0 } }, { { 1, 1 }, { 1, 1 } }, { { 0, 0 }, { 0, 0 } } }) -- green
        local c = plot.canvas(20, 10)
        c:image(rgbt, 0, 0, 10, 10)
        c:color(0, 0, 0)
        c:rect(10, 0, 10, 10)
        c:image(rgbt, 10, 0, 10, 10, { alpha = 0.5 })
        c:save(path("rgb.png"))
        local rgb = pixels(path("rgb.png"))
        assert.is_true(near(rgb[5][5], 0, 1, 0))
        assert.is_true(near(rgb[5][15], 0, 0.5, 0, 0.03))
        local c2 = plot.canvas(4, 4)
        c2:image(whorl.full({ 2, 2 }, 51):byte(), 0, 0, 4, 4)
        c2:save(path("u8.png"))
        assert.is_true(near(pixels(path("u8.png"))[2][2], 0.2, 0.2, 0.2))
    end)

    it("saves atomically: no temporary file is left beside the PNG", function()
        local dir = path("atomic")
        assert(os.execute("mkdir -p " .. dir))
        local c = plot.canvas(8, 8)
        c:save(dir .. "/a.png")
        c:save(dir .. "/a.png") -- replacing an existing file
        assert.are.same({ "a.png" }, list_dir(dir))
        assert_error_with(dir .. "/missing/b.png", function() c:save(dir .. "/missing/b.png") end)
        assert.are.same({ "a.png" }, list_dir(dir))
    end)

    it("is closed by close(), after which it errors; size() reports its size", function()
        local c = plot.canvas(12, 7)
        assert.are.same({ 12, 7 }, { c:size() })
        c:close()
        c:close() -- twice is harmless
        assert_error_with("closed", function() c:line(0, 0, 1, 1) end)
        assert.truthy(tostring(c):find("closed"))
        do local _ <close> = plot.canvas(5, 5) end
        collectgarbage()
    end)

    it("rejects bad arguments with errors naming them", function()
        local c = plot.canvas(10, 10)
        assert_error_with("width", function() plot.canvas(0, 10) end)
        assert_error_with("height", function() plot.canvas(10, 100000) end)
        assert_error_with("y1 must be finite", function() c:line(0, 0 / 0, 1, 1) end)
        assert_error_with("x2 = ", function() c:line(0, 0, 1e9, 1) end)
        assert_error_with("r must be in", function() c:color(2, 0, 0) end)
        assert_error_with("b must be a number", function() c:color(0, 0, "x") end)
        assert_error_with("points[3]", function() c:polyline({ 0, 0, math.huge, 1 }) end)
        assert_error_with("at least two points", function() c:polyline({ 0, 0, 1 }) end)
        assert_error_with("w must be in", function() c:rect(0, 0, -1, 1) end)
        assert_error_with("fill must be a boolean", function() c:rect(0, 0, 1, 1, "yes") end)
        assert_error_with("width must be in", function() c:line(0, 0, 1, 1, 0) end)
        assert_error_with("unknown option 'sise'", function() c:text(0, 0, "a", { sise = 3 }) end)
        assert_error_with("'align' must be one of left, center, right", function()
            c:text(0, 0, "a", { align = "middle" })
        end)
        assert_error_with("UTF-8", function() c:text(0, 0, "a\255b") end)
        assert_error_with("UTF-8", function() c:text(0, 0, "\xed\xa0\x80") end)   -- a surrogate
        assert_error_with("UTF-8", function() c:text(0, 0, "\u{FFFF}") end)        -- cairo refuses these
        assert.is_number(c:text(0, 5, "日本 ✓")) -- the canvas still works after a refused string
        assert_error_with("size", function() c:text(0, 0, "a", { size = -1 }) end)
        assert_error_with("got a tensor of size 2x3x4", function() c:image(whorl.rand(2, 3, 4), 0, 0) end)
        assert_error_with("row 1, column 2", function() c:image(whorl.tensor({ { 0, 0 / 0 } }), 0, 0) end)
        assert_error_with("'filter' must be one of", function()
            c:image(whorl.rand(2, 2), 0, 0, 4, 4, { filter = "cubic" })
        end)
        assert_error_with("'alpha'", function() c:image(whorl.rand(2, 2), 0, 0, 4, 4, { alpha = 2 }) end)
    end)
end)

describe("plot.colormap", function()
    local function at(name, v)
        local m = plot.colormap(whorl.tensor({ { v } }), name)
        assert.are.same({ 3, 1, 1 }, m:size())
        return { m[1][1][1], m[2][1][1], m[3][1][1] }
    end

    it("jet: dark blue at 0, green-dominated at 0.5, dark red at 1 (MATLAB's jet)", function()
        assert.is_true(near(at("jet", 0), 0, 0, 0.5, 1e-6))
        assert.is_true(near(at("jet", 0.5), 0.5, 1, 0.5, 1e-6))
        assert.is_true(near(at("jet", 1), 0.5, 0, 0, 1e-6))
        assert.is_true(near(at("jet", 0.25), 0, 0.5, 1, 1e-6))
        assert.is_true(near(at("jet", 0.75), 1, 0.5, 0, 1e-6))
        assert.are.same(at("jet", 1), at("jet", 7))  -- clamped
        assert.are.same(at("jet", 0), at("jet", -3))
    end)

    it("gray is the identity and viridis has matplotlib's endpoints", function()
        assert.is_true(near(at("gray", 0.3), 0.3, 0.3, 0.3, 1e-6))
        assert.is_true(near(at("viridis", 0), 0.267004, 0.004874, 0.329415, 1e-6))
        assert.is_true(near(at("viridis", 1), 0.993248, 0.906157, 0.143936, 1e-6))
        assert.is_true(near(at("viridis", 0.5), 0.127568, 0.566949, 0.550556, 1e-6))
    end)

    it("maps a whole (H,W) or (1,H,W) image and rejects other shapes and NaN", function()
        local m = plot.colormap(whorl.rand(1, 4, 5), "jet")
        assert.are.same({ 3, 4, 5 }, m:size())
        assert_error_with("got size 3x4x5", function() plot.colormap(whorl.rand(3, 4, 5)) end)
        assert_error_with("non-finite value at row 1, column 2", function()
            plot.colormap(whorl.tensor({ { 0, 0 / 0 } }))
        end)
        assert_error_with("invalid option 'hot'", function() plot.colormap(whorl.rand(2, 2), "hot") end)
    end)
end)

describe("plot.axis", function()
    local function labels(axis)
        local out = {}
        for i, t in ipairs(axis.ticks) do out[i] = t.label end
        return out
    end

    it("ticks at whole 1, 2, 5 x 10^k steps covering the data, one format per axis", function()
        local a = plot.axis({ 0.18, 0.5, 1.1, 0 / 0 })
        assert.are.same({ 0, 1.2 }, { a.lo, a.hi })
        assert.are.same({ "0.0", "0.2", "0.4", "0.6", "0.8", "1.0", "1.2" }, labels(a))
        assert.are.same({ "0", "2e5", "4e5", "6e5", "8e5" }, labels(plot.axis({ 1e5, 7e5 })))
        assert.are.same({ "-10", "0", "10", "20", "30" }, labels(plot.axis({ -7, 25 })))
    end)

    it("steps by whole numbers for whole values (epochs) and widens a single value", function()
        assert.are.same({ "1", "2", "3" }, labels(plot.axis({ 1, 2, 3 })))
        local one = plot.axis({ 0.001 })
        assert.is_true(one.lo < 0.001 and one.hi > 0.001 and #one.ticks >= 3)
        assert.are.same({ 0, 1 }, { plot.axis({}).lo, plot.axis({}).hi })
    end)

    it("on a log scale: decades, with 2 and 5 in a short span; values <= 0 ignored", function()
        local a = plot.axis({ 0.001, 0.5, 0, -1 }, { log = true })
        assert.are.same({ -3, 0 }, { a.lo, a.hi })
        assert.are.same({ "0.001", "0.01", "0.1", "1" }, labels(a))
        assert.are.same({ "1", "2", "5", "10" }, labels(plot.axis({ 1.5, 9 }, { log = true })))
        assert.are.same({ "1e-8", "1e-7", "1e-6" }, labels(plot.axis({ 2e-8, 5e-7 }, { log = true })))
    end)
end)

describe("plot.pareto_front", function()
    local points = {
        { x = 1, y = 5 }, { x = 2, y = 4 }, { x = 3, y = 6 }, { x = 2, y = 2 },
        { x = 4, y = 1 }, { x = 5, y = 1 }, { x = 2, y = 2 }, { x = 0 / 0, y = 0 },
    }

    it("keeps the points nothing dominates, sorted by x (min/min)", function()
        -- (2,4) and (3,6) lose to (2,2); (5,1) to (4,1); the two (2,2) tie
        -- and stay; the NaN point is never on the front and dominates nothing.
        assert.are.same({ 1, 4, 7, 5 }, plot.pareto_front(points, { x = "min", y = "min" }))
    end)

    it("follows the senses asked for (max/max, min/max)", function()
        assert.are.same({ 3, 6 }, plot.pareto_front(points, { x = "max", y = "max" }))
        assert.are.same({ 1, 3 }, plot.pareto_front(points, { x = "min", y = "max" }))
        assert.are.same({}, plot.pareto_front({}, { x = "min", y = "min" }))
    end)

    it("rejects a bad sense or point", function()
        assert_error_with("pareto.y", function() plot.pareto_front(points, { x = "min", y = "up" }) end)
        assert_error_with("points[2]", function() plot.pareto_front({ { x = 1, y = 1 }, { x = 1 } }, { x = "min", y = "min" }) end)
    end)
end)

describe("figures", function()
    local BLUE = { 0.12, 0.47, 0.71 } -- the first series colour

    local function has_colour(rgb, c, tol)
        return count(rgb, function(p) return near(p, c[1], c[2], c[3], tol or 0.03) end)
    end

    it("plot.lines writes a PNG of the requested size with its series drawn", function()
        plot.lines { path = path("lines.png"), width = 320, height = 200, title = "Loss",
            xlabel = "epoch", ylabel = "loss",
            series = { { name = "loss", y = { 1, 0.5, 0 / 0, 0.3, 0.2 } }, { name = "val", x = { 3 }, y = { 0.7 } } } }
        local info = whorl.image.info(path("lines.png"))
        assert.are.same({ 320, 200 }, { info.width, info.height })
        local rgb = pixels(path("lines.png"))
        assert.is_true(has_colour(rgb, BLUE) > 100)
        assert.is_true(has_colour(rgb, { 1.0, 0.5, 0.05 }) > 20) -- the one-point series' dot and legend
    end)

    it("plot.lines handles log y with non-positive values, and all-NaN series", function()
        plot.lines { path = path("logy.png"), logy = true, series = { { y = { 1, 0.1, 0, -1, 0.001 } } } }
        assert.is_true(has_colour(pixels(path("logy.png")), BLUE) > 50)
        plot.lines { path = path("nan.png"), series = { { name = "diverged", y = { 0 / 0, 0 / 0 } } } }
        assert.are.equal(640, whorl.image.info(path("nan.png")).width)
    end)

    it("plot.scatter marks the Pareto front in red", function()
        local pts = {}
        for i = 1, 12 do pts[i] = { x = i * 1000, y = 20 + (i * 7) % 5, label = "run" .. i } end
        plot.scatter { path = path("scatter.png"), width = 400, height = 300, points = pts, logx = true,
            pareto = { x = "min", y = "max" }, title = "params vs PSNR" }
        local rgb, w, h = pixels(path("scatter.png"))
        assert.are.same({ 400, 300 }, { w, h })
        assert.is_true(has_colour(rgb, { 0.84, 0.15, 0.16 }, 0.06) > 30)
        plot.scatter { path = path("scatter_plain.png"), points = pts }
        assert.are.equal(0, has_colour(pixels(path("scatter_plain.png")), { 0.84, 0.15, 0.16 }, 0.06))
    end)

    it("plot.image_grid puts each image in its cell, captions under it", function()
        local black, white = whorl.zeros(4, 4), whorl.ones(4, 4)
        plot.image_grid { path = path("grid.png"), cell = 32, rows = { { images = { black, white } } } }
        local rgb, w, h = pixels(path("grid.png"))
        -- no label column (8 px margin), two 32-px cells 6 px apart, 8 px top
        assert.are.same({ 8 + 2 * 38 + 2, 8 + 38 + 4 }, { w, h })
        assert.are.equal(32 * 32, count(rgb, dark))
        assert.are.equal(32 * 32, count(rgb, dark, 9, 9, 40, 40))
        plot.image_grid { path = path("grid2.png"), cell = 32, title = "Samples",
            rows = { { label = "clean", images = { white, white }, captions = { "21.3 dB", "a long caption here" } } } }
        local rgb2 = pixels(path("grid2.png"))
        assert.is_true(count(rgb2, dark) > 100) -- title, label and captions
    end)

    it("plot.heatmap_figure draws input, heat in jet with a colour bar, and the overlay", function()
        local rows = {}
        for y = 1, 8 do
            rows[y] = {}
            for x = 1, 8 do rows[y][x] = y == 1 and 1 or 0 end
        end
        local heat = whorl.tensor(rows)
        plot.heatmap_figure { path = path("heat.png"), image = whorl.rand(16, 16), heat = heat,
            title = "Grad-CAM", size = 64 }
        local rgb, w, h = pixels(path("heat.png"))
        assert.are.equal(3 * 64 + 2 * 16 + 60 + 16, w)
        assert.is_true(has_colour(rgb, { 0.5, 0, 0 }) > 64)   -- heat 1: dark red
        assert.is_true(has_colour(rgb, { 0, 0, 0.5 }) > 64)   -- heat 0: dark blue
    end)

    it("reject bad options with errors naming them", function()
        assert_error_with("option 'path'", function() plot.lines { series = { { y = { 1 } } } } end)
        assert_error_with("unknown option 'colour'", function()
            plot.lines { path = path("x.png"), colour = 1, series = { { y = { 1 } } } }
        end)
        assert_error_with("series[1] has 2 x values and 1 y values", function()
            plot.lines { path = path("x.png"), series = { { x = { 1, 2 }, y = { 1 } } } }
        end)
        assert_error_with("series[1].y[2]", function()
            plot.lines { path = path("x.png"), series = { { y = { 1, "a" } } } }
        end)
        assert_error_with("rows[1].images[2]", function()
            plot.image_grid { path = path("x.png"), rows = { { images = { whorl.rand(2, 2), whorl.rand(2, 2, 2) } } } }
        end)
        assert_error_with("option 'heat'", function()
            plot.heatmap_figure { path = path("x.png"), image = whorl.rand(4, 4), heat = { 1 } }
        end)
        assert_error_with("option 'width'", function()
            plot.scatter { path = path("x.png"), width = 10, points = {} }
        end)
        assert_error_with(path("no/such/dir.png"), function()
            plot.lines { path = path("no/such/dir.png"), series = { { y = { 1, 2 } } } }
        end)
    end)
end)

describe("docs/plot.md", function()
    it("its example runs and writes the image grid it shows", function()
        local f = assert(io.open("docs/plot.md", "r"))
        local code = f:read("a"):match("```lua\n(.-)```")
        f:close()
        assert.truthy(code, "docs/plot.md has no ```lua block")
        local out = path("example.png")
        local replaced
        code, replaced = code:gsub('"docs/plot_example.png"', '"' .. out .. '"')
        assert.are.equal(1, replaced)
        assert(load(code, "docs/plot.md example", "t"))()
        local info = whorl.image.info(out)
        local shown = whorl.image.info("docs/plot_example.png")
        assert.are.same({ shown.width, shown.height }, { info.width, info.height })
    end)
end)
