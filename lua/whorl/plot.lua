-- whorl.plot: figures drawn with cairo.  The canvas and colour maps come
-- from the C module (lua/bind_plot.c, listed there); this file adds the
-- figures, each written as a PNG at opts.path (see docs/plot.md):
--
--   plot.lines{path, series = {{name=, x={..}, y={..}}, ...}, title=, xlabel=, ylabel=,
--              width=640, height=400, logy=false}
--       x defaults to 1..#y; NaN (or, with logy, a value <= 0) leaves a gap;
--       isolated points are drawn as dots, so a one-point series shows
--   plot.scatter{path, points = {{x=, y=, label=}, ...}, title=, xlabel=, ylabel=,
--                width=640, height=480, logx=false, logy=false,
--                pareto = {x = "min"|"max", y = "min"|"max"}}
--       pareto: the front is marked in red and joined
--   plot.pareto_front(points, {x=, y=}) -> sorted indices of the points no
--       other point dominates (at least as good in both, better in one);
--       points with a non-finite coordinate are never on it
--   plot.axis(values [, {log=false}]) -> {lo=, hi=, log=, ticks = {{value=, label=}, ...}}
--       the axis the figures draw for these values: whole 1, 2, 5 x 10^k
--       steps (whole numbers when every value is one), log10 values and
--       decades (plus 2 and 5 within a short span) when log
--   plot.image_grid{path, rows = {{label=, images = {t, ...}, captions = {s, ...}}, ...},
--                   cell = 96, title = nil}
--       one row per entry, label at left, each image fitted into a cell x
--       cell square with its caption under it
--   plot.heatmap_figure{path, image = (H,W), heat = (H,W) in [0,1], title = nil,
--                       alpha = 0.5, size = 256}
--       three panels: the input, the heat in jet with a colour bar 0..1, and
--       the heat over the input
local whorl = require "whorl"

-- The C table itself, extended: whorl.plot.lines works once this is loaded.
local plot = whorl.plot

-- matplotlib's "tab10" colours, for series.
local PALETTE = {
    { 0.12, 0.47, 0.71 }, { 1.00, 0.50, 0.05 }, { 0.17, 0.63, 0.17 }, { 0.84, 0.15, 0.16 },
    { 0.58, 0.40, 0.74 }, { 0.55, 0.34, 0.29 }, { 0.89, 0.47, 0.76 }, { 0.50, 0.50, 0.50 },
    { 0.74, 0.74, 0.13 }, { 0.09, 0.75, 0.81 },
}
local TEXT, GRID, AXIS = { 0.1, 0.1, 0.1 }, { 0.88, 0.88, 0.88 }, { 0.2, 0.2, 0.2 }

-- ---- argument checks --------------------------------------------------------------------

local function fail(who, fmt, ...)
    error(string.format("plot.%s: " .. fmt, who, ...), 3)
end

local function check_opts(who, opts, allowed)
    if type(opts) ~= "table" then fail(who, "expected an options table, got %s", type(opts)) end
    local ok = {}
    for _, k in ipairs(allowed) do ok[k] = true end
    for k in pairs(opts) do
        if not ok[k] then
            fail(who, "unknown option '%s' (expected %s)", tostring(k), table.concat(allowed, ", "))
        end
    end
    if type(opts.path) ~= "string" or opts.path == "" then
        fail(who, "option 'path' must be a file name, got %s", tostring(opts.path))
    end
    return opts
end

local function opt_string(who, opts, name)
    local v = opts[name]
    if v ~= nil and type(v) ~= "string" and type(v) ~= "number" then
        fail(who, "option '%s' must be a string, got %s", name, type(v))
    end
    return v and tostring(v) or nil
end

local function opt_int(who, opts, name, def, lo, hi)
    local v = opts[name]
    if v == nil then return def end
    if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
        fail(who, "option '%s' must be an integer, got %s", name, tostring(v))
    end
    if v < lo or v > hi then fail(who, "option '%s' must be in %d..%d, got %d", name, lo, hi, v) end
    return math.tointeger(v)
end

local function opt_bool(who, opts, name)
    local v = opts[name]
    if v ~= nil and type(v) ~= "boolean" then
        fail(who, "option '%s' must be a boolean, got %s", name, type(v))
    end
    return v or false
end

local function is_finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

-- A numeric list (holes are not allowed: a NaN marks a gap instead).
local function check_numbers(who, what, list)
    if type(list) ~= "table" then fail(who, "%s must be a list of numbers, got %s", what, type(list)) end
    for i = 1, #list do
        if type(list[i]) ~= "number" then
            fail(who, "%s[%d] must be a number, got %s", what, i, type(list[i]))
        end
    end
    return list
end

local function check_image(who, what, t)
    if not whorl.is_tensor(t) then fail(who, "%s must be a tensor, got %s", what, type(t)) end
    local d = t:dim()
    if not (d == 2 or (d == 3 and (t:size(1) == 1 or t:size(1) == 3))) then
        local dims = {}
        for k = 1, d do dims[k] = tostring(t:size(k)) end
        fail(who, "%s must be (H,W), (1,H,W) or (3,H,W), got size %s", what, table.concat(dims, "x"))
    end
    return t, t:size(d - 1), t:size(d)
end

-- ---- scales and ticks -------------------------------------------------------------------

-- The data range [lo, hi] of a list of values (finite, and > 0 when log),
-- widened when it is a single value; nil when there is none.
local function data_range(values, log)
    local lo, hi
    for _, v in ipairs(values) do
        if is_finite(v) and (not log or v > 0) then
            lo, hi = math.min(lo or v, v), math.max(hi or v, v)
        end
    end
    if not lo then return nil end
    if log then lo, hi = math.log(lo, 10), math.log(hi, 10) end
    if hi - lo < 1e-12 * math.max(1, math.abs(hi)) then
        local pad = (log or lo == 0) and 0.5 or math.abs(lo) * 0.1
        lo, hi = lo - pad, hi + pad
    end
    if not is_finite(hi - lo) then return nil end -- beyond what a double axis can span
    return lo, hi
end

-- The step m x 10^e (m in 1, 2, 5) giving about `count` intervals over
-- span, as {m, e}: ticks are computed from integers so that 6 x 0.2 is the
-- double nearest 1.2, not 1.2000000000000002.
local function nice_step(span, count)
    local raw = span / count
    local e = math.floor(math.log(raw, 10))
    for _, m in ipairs({ 1, 2, 5 }) do
        if raw <= m * 10 ^ e * 1.0000001 then return m, e end
    end
    return 1, e + 1
end

-- n x m x 10^e, correctly rounded (a division by an exact power of ten).
local function decimal(n, m, e)
    if e >= 0 then return n * m * 10 ^ e end
    return n * m / 10 ^ -e
end

-- "2.5e-5" rather than "2.5e-05".
local function short_exponent(s) return (s:gsub("e%+?(%-?)0*(%d)", "e%1%2")) end

-- The label of tick v on an axis of the given step: fixed decimals enough
-- for the step, or (scientific = true) significant digits enough for it.
local function format_tick(v, step, scientific)
    if scientific then
        if v == 0 then return "0" end
        local digits = math.floor(math.log(math.abs(v), 10)) - math.floor(math.log(step, 10) + 1e-9) + 1
        return short_exponent(string.format("%." .. math.max(1, math.min(15, digits)) .. "g", v))
    end
    local decimals = math.max(0, -math.floor(math.log(step, 10) + 1e-9))
    return string.format("%." .. decimals .. "f", v)
end

-- A linear axis: range extended to whole steps, ticks at each step (whole
-- numbers when every value is one, as epochs are).
local function linear_axis(lo, hi, integers)
    local m, e = nice_step(hi - lo, 5)
    if integers and e < 0 then m, e = 1, 0 end
    local step = decimal(1, m, e)
    local first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    -- one format for the whole axis: scientific for large values or tiny steps
    local scientific = math.max(math.abs(lo), math.abs(hi)) >= 1e5 or step < 1e-4
    local ticks = {}
    for n = first, last do
        local v = decimal(n, m, e)
        ticks[#ticks + 1] = { value = v, label = format_tick(v, step, scientific) }
    end
    return { lo = decimal(first, m, e), hi = decimal(last, m, e), ticks = ticks, log = false }
end

-- The label of m x 10^e on a log axis: plain for moderate powers, else "2e-5".
local function log_label(m, e)
    if e >= -3 and e <= 4 then return format_tick(m * 10 ^ e, 10 ^ e) end
    return string.format("%de%d", m, e)
end

-- A log axis over log10 values: whole decades, plus 2 and 5 when it spans
-- fewer than two.
local function log_axis(lo, hi)
    lo, hi = math.floor(lo + 1e-9), math.ceil(hi - 1e-9)
    if hi == lo then hi = lo + 1 end
    local every = math.max(1, math.ceil((hi - lo) / 8))
    local ticks = {}
    for e = lo, hi do
        if (e - lo) % every == 0 then ticks[#ticks + 1] = { value = e, label = log_label(1, e) } end
        if hi - lo < 2 and e < hi then
            for _, m in ipairs({ 2, 5 }) do
                ticks[#ticks + 1] = { value = e + math.log(m, 10), label = log_label(m, e) }
            end
        end
    end
    return { lo = lo, hi = hi, ticks = ticks, log = true }
end

local function all_integers(values)
    for _, v in ipairs(values) do
        if is_finite(v) and v ~= math.floor(v) then return false end
    end
    return true
end

local function make_axis(values, log)
    local lo, hi = data_range(values, log)
    if not lo then lo, hi = 0, 1 end
    return log and log_axis(lo, hi) or linear_axis(lo, hi, all_integers(values))
end

function plot.axis(values, opts)
    if type(values) ~= "table" then error("plot.axis: values must be a list of numbers", 2) end
    return make_axis(values, type(opts) == "table" and opts.log or false)
end

-- The position of data value v along an axis mapped to pixels [p0, p1];
-- nil where the value cannot be drawn (NaN, <= 0 on a log axis).
local function position(axis, v, p0, p1)
    if not is_finite(v) then return nil end
    if axis.log then
        if v <= 0 then return nil end
        v = math.log(v, 10)
    end
    local p = p0 + (v - axis.lo) / (axis.hi - axis.lo) * (p1 - p0)
    if not (math.abs(p) < 1e5) then return nil end -- far off the canvas (an axis that could not span the data)
    return p
end

-- ---- figure frame: title, axes, grid, ticks, labels -------------------------------------

local function set_color(c, rgb, a) c:color(rgb[1], rgb[2], rgb[3], a) end

local function draw_title(c, width, title)
    if not title then return end
    set_color(c, TEXT)
    c:text(width / 2, 10, title, { size = 15, bold = true, align = "center", valign = "top" })
end

-- Pixel box of the plotting area, leaving room for the tick labels.
local function plot_area(c, width, height, yaxis, opts)
    local label_w = 0
    for _, t in ipairs(yaxis.ticks) do label_w = math.max(label_w, (c:measure(t.label, { size = 11 }))) end
    local left = label_w + 14 + (opts.ylabel and 22 or 0)
    local top = opts.title and 38 or 14
    local bottom = height - (opts.xlabel and 48 or 30)
    return { x0 = left, y0 = top, x1 = width - 16, y1 = bottom }
end

local function draw_grid_and_ticks(c, area, xaxis, yaxis)
    for _, t in ipairs(xaxis.ticks) do
        local px = area.x0 + (t.value - xaxis.lo) / (xaxis.hi - xaxis.lo) * (area.x1 - area.x0)
        set_color(c, GRID)
        c:line(px, area.y0, px, area.y1)
        set_color(c, TEXT)
        c:line(px, area.y1, px, area.y1 + 4)
        c:text(px, area.y1 + 7, t.label, { size = 11, align = "center", valign = "top" })
    end
    for _, t in ipairs(yaxis.ticks) do
        local py = area.y1 - (t.value - yaxis.lo) / (yaxis.hi - yaxis.lo) * (area.y1 - area.y0)
        set_color(c, GRID)
        c:line(area.x0, py, area.x1, py)
        set_color(c, TEXT)
        c:line(area.x0 - 4, py, area.x0, py)
        c:text(area.x0 - 7, py, t.label, { size = 11, align = "right", valign = "middle" })
    end
end

local function draw_axis_labels(c, area, height, opts)
    set_color(c, TEXT)
    if opts.xlabel then
        c:text((area.x0 + area.x1) / 2, height - 8, opts.xlabel, { size = 12, align = "center" })
    end
    if opts.ylabel then
        c:text(8, (area.y0 + area.y1) / 2, opts.ylabel,
            { size = 12, align = "center", valign = "top", rotate = -math.pi / 2 })
    end
end

local function draw_frame(c, area)
    set_color(c, AXIS)
    c:rect(area.x0, area.y0, area.x1 - area.x0, area.y1 - area.y0, false)
end

-- Title, grid, ticks and labels; returns the plotting area with mappers.
local function axes(c, width, height, xaxis, yaxis, opts)
    draw_title(c, width, opts.title)
    local area = plot_area(c, width, height, yaxis, opts)
    draw_grid_and_ticks(c, area, xaxis, yaxis)
    draw_axis_labels(c, area, height, opts)
    function area.px(v) return position(xaxis, v, area.x0, area.x1) end
    function area.py(v) return position(yaxis, v, area.y1, area.y0) end
    return area
end

-- ---- plot.lines -------------------------------------------------------------------------

local function check_series(who, series)
    if type(series) ~= "table" or #series == 0 then
        fail(who, "option 'series' must be a non-empty list of {name=, x=, y=}")
    end
    local checked = {}
    for i, s in ipairs(series) do
        if type(s) ~= "table" then fail(who, "series[%d] must be a table, got %s", i, type(s)) end
        local y = check_numbers(who, string.format("series[%d].y", i), s.y)
        local x = s.x and check_numbers(who, string.format("series[%d].x", i), s.x)
        if x and #x ~= #y then
            fail(who, "series[%d] has %d x values and %d y values", i, #x, #y)
        end
        if not x then
            x = {}
            for k = 1, #y do x[k] = k end
        end
        if s.name ~= nil and type(s.name) ~= "string" then
            fail(who, "series[%d].name must be a string, got %s", i, type(s.name))
        end
        checked[i] = { name = s.name, x = x, y = y, color = PALETTE[(i - 1) % #PALETTE + 1] }
    end
    return checked
end

-- Runs of consecutive drawable points, as lists of pixel coordinates.
local function pixel_runs(area, xs, ys)
    local runs, run = {}, nil
    for k = 1, #ys do
        local px, py = area.px(xs[k]), area.py(ys[k])
        if px and py then
            run = run or {}
            run[#run + 1], run[#run + 2] = px, py
        elseif run then
            runs[#runs + 1], run = run, nil
        end
    end
    if run then runs[#runs + 1] = run end
    return runs
end

local function draw_series(c, area, s)
    set_color(c, s.color)
    for _, run in ipairs(pixel_runs(area, s.x, s.y)) do
        if #run >= 4 then c:polyline(run, 2) end
        if #run == 2 or #s.y <= 30 then
            for k = 1, #run, 2 do c:circle(run[k], run[k + 1], #run == 2 and 3.5 or 2.5) end
        end
    end
end

-- A box in the top-right corner with a line sample and the name of each
-- named series.
local function draw_legend(c, area, series)
    local named = {}
    for _, s in ipairs(series) do if s.name then named[#named + 1] = s end end
    if #named == 0 then return end
    local w = 0
    for _, s in ipairs(named) do w = math.max(w, (c:measure(s.name, { size = 11 }))) end
    local row, bw = 17, w + 42
    local bx, by = area.x1 - bw - 8, area.y0 + 8
    c:color(1, 1, 1, 0.85)
    c:rect(bx, by, bw, row * #named + 8)
    set_color(c, GRID)
    c:rect(bx, by, bw, row * #named + 8, false)
    for k, s in ipairs(named) do
        local y = by + 4 + row * (k - 0.5)
        set_color(c, s.color)
        c:line(bx + 8, y, bx + 28, y, 2)
        set_color(c, TEXT)
        c:text(bx + 34, y, s.name, { size = 11, valign = "middle" })
    end
end

local function all_values(series, field)
    local v = {}
    for _, s in ipairs(series) do
        for _, x in ipairs(s[field]) do v[#v + 1] = x end
    end
    return v
end

local function note_if_empty(c, area, series)
    for _, s in ipairs(series) do
        if #pixel_runs(area, s.x, s.y) > 0 then return end
    end
    set_color(c, TEXT)
    c:text((area.x0 + area.x1) / 2, (area.y0 + area.y1) / 2, "no finite values to plot",
        { size = 13, align = "center", valign = "middle" })
end

-- Clips drawing to the plotting area plus a margin, so that markers on its
-- edge show whole.
local function clip_to(c, area)
    local m = 6
    c:clip(area.x0 - m, area.y0 - m, area.x1 - area.x0 + 2 * m, area.y1 - area.y0 + 2 * m)
end

local function save(c, path)
    c:save(path)
    c:close()
end

function plot.lines(opts)
    local who = "lines"
    check_opts(who, opts, { "path", "series", "title", "xlabel", "ylabel", "width", "height", "logy" })
    local width, height = opt_int(who, opts, "width", 640, 160, 8192), opt_int(who, opts, "height", 400, 120, 8192)
    local labels = { title = opt_string(who, opts, "title"), xlabel = opt_string(who, opts, "xlabel"),
        ylabel = opt_string(who, opts, "ylabel") }
    local logy = opt_bool(who, opts, "logy")
    local series = check_series(who, opts.series)
    local xaxis, yaxis = make_axis(all_values(series, "x"), false), make_axis(all_values(series, "y"), logy)
    local c = plot.canvas(width, height)
    local area = axes(c, width, height, xaxis, yaxis, labels)
    clip_to(c, area)
    for _, s in ipairs(series) do draw_series(c, area, s) end
    c:clip()
    draw_frame(c, area)
    draw_legend(c, area, series)
    note_if_empty(c, area, series)
    save(c, opts.path)
end

-- ---- plot.scatter and the Pareto front ---------------------------------------------------

local function check_sense(who, sense, name)
    local v = sense[name]
    if v ~= "min" and v ~= "max" then
        fail(who, "pareto.%s must be \"min\" or \"max\", got %s", name, tostring(v))
    end
    return v == "max" and -1 or 1 -- multiplier turning "max" into "min"
end

local function check_points(who, points)
    if type(points) ~= "table" then fail(who, "points must be a list of {x=, y=}, got %s", type(points)) end
    for i, p in ipairs(points) do
        if type(p) ~= "table" or type(p.x) ~= "number" or type(p.y) ~= "number" then
            fail(who, "points[%d] must be {x = number, y = number [, label =]}", i)
        end
    end
    return points
end

-- True when a dominates b, both given as minimised pairs.
local function dominates(a1, a2, b1, b2)
    return a1 <= b1 and a2 <= b2 and (a1 < b1 or a2 < b2)
end

function plot.pareto_front(points, sense)
    local who = "pareto_front"
    check_points(who, points)
    if type(sense) ~= "table" then fail(who, "the second argument must be {x = \"min\"|\"max\", y = ...}") end
    local sx, sy = check_sense(who, sense, "x"), check_sense(who, sense, "y")
    local front = {}
    for i, p in ipairs(points) do
        local on = is_finite(p.x) and is_finite(p.y)
        for j, q in ipairs(points) do
            if not on then break end
            if j ~= i and is_finite(q.x) and is_finite(q.y)
                and dominates(sx * q.x, sy * q.y, sx * p.x, sy * p.y) then
                on = false
            end
        end
        if on then front[#front + 1] = i end
    end
    table.sort(front, function(a, b)
        if points[a].x ~= points[b].x then return points[a].x < points[b].x end
        return a < b
    end)
    return front
end

local function draw_points(c, area, points, front_set)
    for i, p in ipairs(points) do
        local px, py = area.px(p.x), area.py(p.y)
        if px and py then
            if front_set[i] then c:color(0.84, 0.15, 0.16) else set_color(c, PALETTE[1], 0.75) end
            c:circle(px, py, front_set[i] and 5 or 4)
        end
    end
end

local function draw_front_line(c, area, points, front)
    local run = {}
    for _, i in ipairs(front) do
        local px, py = area.px(points[i].x), area.py(points[i].y)
        if px and py then run[#run + 1], run[#run + 2] = px, py end
    end
    if #run >= 4 then
        c:color(0.84, 0.15, 0.16, 0.8)
        c:polyline(run, 1.5)
    end
end

-- Labels right of their point, or left of it where they would leave the canvas.
local function draw_point_labels(c, area, points, width)
    set_color(c, TEXT)
    for _, p in ipairs(points) do
        local px, py = area.px(p.x), area.py(p.y)
        if p.label ~= nil and px and py then
            local label = tostring(p.label)
            if px + 6 + c:measure(label, { size = 9 }) <= width - 2 then
                c:text(px + 6, py - 4, label, { size = 9 })
            else
                c:text(px - 6, py - 4, label, { size = 9, align = "right" })
            end
        end
    end
end

function plot.scatter(opts)
    local who = "scatter"
    check_opts(who, opts, { "path", "points", "title", "xlabel", "ylabel", "width", "height",
        "logx", "logy", "pareto" })
    local width, height = opt_int(who, opts, "width", 640, 160, 8192), opt_int(who, opts, "height", 480, 120, 8192)
    local labels = { title = opt_string(who, opts, "title"), xlabel = opt_string(who, opts, "xlabel"),
        ylabel = opt_string(who, opts, "ylabel") }
    local points = check_points(who, opts.points)
    local front, front_set = {}, {}
    if opts.pareto ~= nil then
        front = plot.pareto_front(points, opts.pareto)
        for _, i in ipairs(front) do front_set[i] = true end
    end
    local xs, ys = {}, {}
    for i, p in ipairs(points) do xs[i], ys[i] = p.x, p.y end
    local xaxis = make_axis(xs, opt_bool(who, opts, "logx"))
    local yaxis = make_axis(ys, opt_bool(who, opts, "logy"))
    local c = plot.canvas(width, height)
    local area = axes(c, width, height, xaxis, yaxis, labels)
    clip_to(c, area)
    draw_front_line(c, area, points, front)
    draw_points(c, area, points, front_set)
    c:clip()
    draw_point_labels(c, area, points, width)
    draw_frame(c, area)
    save(c, opts.path)
end

-- ---- plot.image_grid -----------------------------------------------------------------

-- Draws text centred at (x, y) in at most max_w pixels, shrinking the font
-- (down to 7 px) for long captions.
local function fitted_text(c, x, y, text, size, max_w, extra)
    local w = c:measure(text, { size = size })
    if w > max_w then size = math.max(7, size * max_w / w) end
    local o = { size = size, align = "center", valign = "top" }
    for k, v in pairs(extra or {}) do o[k] = v end
    c:text(x, y, text, o)
end

-- Draws t fitted into the square (x, y, side), aspect ratio kept, centred.
local function fit_image(c, t, h, w, x, y, side, opts)
    local s = math.min(side / w, side / h)
    c:image(t, x + (side - w * s) / 2, y + (side - h * s) / 2, w * s, h * s, opts)
end

local function check_rows(who, rows)
    if type(rows) ~= "table" or #rows == 0 then
        fail(who, "option 'rows' must be a non-empty list of {label=, images=, captions=}")
    end
    local columns, captions = 0, false
    for r, row in ipairs(rows) do
        if type(row) ~= "table" or type(row.images) ~= "table" then
            fail(who, "rows[%d].images must be a list of tensors", r)
        end
        for i, t in ipairs(row.images) do check_image(who, string.format("rows[%d].images[%d]", r, i), t) end
        if row.captions ~= nil and type(row.captions) ~= "table" then
            fail(who, "rows[%d].captions must be a list of strings", r)
        end
        if row.label ~= nil and type(row.label) ~= "string" then
            fail(who, "rows[%d].label must be a string", r)
        end
        columns = math.max(columns, #row.images)
        captions = captions or (row.captions ~= nil and next(row.captions) ~= nil)
    end
    if columns == 0 then fail(who, "no row has images") end
    return columns, captions
end

function plot.image_grid(opts)
    local who = "image_grid"
    check_opts(who, opts, { "path", "rows", "cell", "title" })
    local cell = opt_int(who, opts, "cell", 96, 8, 2048)
    local title = opt_string(who, opts, "title")
    local columns, has_captions = check_rows(who, opts.rows)
    local gap, caption_h, top = 6, has_captions and 18 or 0, title and 36 or 8
    local probe = plot.canvas(1, 1)
    local label_w = 0
    for _, row in ipairs(opts.rows) do
        if row.label then label_w = math.max(label_w, (probe:measure(row.label, { size = 13, bold = true }))) end
    end
    probe:close()
    label_w = label_w > 0 and label_w + 16 or 8
    local row_h = cell + caption_h + gap
    local width = math.ceil(label_w + columns * (cell + gap) + 2)
    local height = math.ceil(top + #opts.rows * row_h + 4)
    if width > 8192 or height > 8192 then
        fail(who, "the grid would be %dx%d pixels (at most 8192 a side): use a smaller cell", width, height)
    end
    local c = plot.canvas(width, height)
    draw_title(c, width, title)
    for r, row in ipairs(opts.rows) do
        local y = top + (r - 1) * row_h
        set_color(c, TEXT)
        if row.label then c:text(8, y + cell / 2, row.label, { size = 13, bold = true, valign = "middle" }) end
        for i, t in ipairs(row.images) do
            local x = label_w + (i - 1) * (cell + gap)
            local _, h, w = check_image(who, "image", t)
            fit_image(c, t, h, w, x, y, cell)
            local caption = row.captions and row.captions[i]
            if caption ~= nil then
                set_color(c, TEXT)
                fitted_text(c, x + cell / 2, y + cell + 3, tostring(caption), 11, cell)
            end
        end
    end
    save(c, opts.path)
end

-- ---- plot.heatmap_figure ---------------------------------------------------------------

-- A vertical jet bar, 1 at the top, with ticks 0, 0.25 ... 1 at its right.
local function draw_colorbar(c, x, y, w, h)
    local steps = 128
    local values = {}
    for k = 1, steps do values[k] = { 1 - (k - 1) / (steps - 1) } end
    local ramp = whorl.tensor(values)
    c:image(plot.colormap(ramp, "jet"), x, y, w, h, { filter = "bilinear" })
    set_color(c, AXIS)
    c:rect(x, y, w, h, false)
    for k = 0, 4 do
        local v, py = k / 4, y + h - k / 4 * h
        c:line(x + w, py, x + w + 4, py)
        c:text(x + w + 7, py, string.format("%.2g", v), { size = 11, valign = "middle" })
    end
end

local function check_heat(who, opts)
    local image, h, w = check_image(who, "option 'image'", opts.image)
    local heat, hh, hw = check_image(who, "option 'heat'", opts.heat)
    if heat:dim() == 3 and heat:size(1) ~= 1 then fail(who, "option 'heat' must be one channel") end
    return image, h, w, heat, hh, hw
end

function plot.heatmap_figure(opts)
    local who = "heatmap_figure"
    check_opts(who, opts, { "path", "image", "heat", "title", "alpha", "size" })
    local image, h, w, heat, hh, hw = check_heat(who, opts)
    local alpha = opts.alpha == nil and 0.5 or opts.alpha
    if type(alpha) ~= "number" or not (alpha >= 0 and alpha <= 1) then
        fail(who, "option 'alpha' must be a number in [0, 1], got %s", tostring(alpha))
    end
    local side = opt_int(who, opts, "size", 256, 32, 2048)
    local title = opt_string(who, opts, "title")
    local gap, bar, top = 16, 60, title and 40 or 12
    local width, height = 3 * side + 2 * gap + bar + 16, top + side + 28
    local heat_rgb = plot.colormap(heat, "jet")
    local c = plot.canvas(width, height)
    draw_title(c, width, title)
    local x1, x2 = 8, 8 + side + gap
    local x3 = x2 + side + bar
    fit_image(c, image, h, w, x1, top, side)
    fit_image(c, heat_rgb, hh, hw, x2, top, side)
    draw_colorbar(c, x2 + side + 8, top, 14, side)
    fit_image(c, image, h, w, x3, top, side)
    fit_image(c, heat_rgb, hh, hw, x3, top, side, { alpha = alpha })
    set_color(c, TEXT)
    for _, p in ipairs({ { x1, "input" }, { x2, "heat" }, { x3, "overlay" } }) do
        c:text(p[1] + side / 2, top + side + 8, p[2], { size = 12, align = "center", valign = "top" })
    end
    save(c, opts.path)
end

return plot
