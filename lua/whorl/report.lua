-- whorl.report: the figures and page that summarise one training run.
--
--   report.loss_png(history_csv, png [, {title=, logy=nil, separator=","}])
--       train and validation loss per epoch from a CSVLogger file (columns
--       epoch, loss, val_loss, ...; an empty or non-numeric cell is a gap;
--       a repeated epoch, as a resumed run may log, keeps its last row).
--       logy = nil picks a log scale when the losses span over two decades.
--   report.write_html(run_dir [, {title=, loss_png=true}]) -> path of report.html
--       one page with no external resources: the title, config.json as a
--       table, metrics.json as tables (image quality: whole/region x
--       damaged/restored x MSE/PSNR/SSIM; identity: damaged vs restored;
--       the rest), and whichever of loss.png, samples.png, gradcam.png,
--       minutiae.png exist, referenced by relative path, with captions.
--       loss_png = true first draws loss.png from history.csv when only the
--       latter exists.  All text is HTML-escaped; the page is written to a
--       temporary file and renamed.
--   report.render_png(html, png [, {width=1200, height=2000, timeout=60, browser=nil}])
--       -> true, or false and the reason (no chromium, or it failed): a
--       screenshot of the page by headless chromium (browser: the program
--       to use instead of the first of chromium, chromium-browser,
--       google-chrome found on PATH).
--   report.read_history(history_csv [, separator=","]) -> columns
--       {names = {"epoch", ...}, epoch = {...}, loss = {...}, ...}
local cjson = require "cjson"
local plot = require "whorl.plot"
local files = require "whorl.files"

local report = {}

-- ---- files ----------------------------------------------------------------------------

local exists = files.exists

local function read_file(path)
    local s, err = files.read(path)
    if not s then error(string.format("report: cannot read '%s': %s", path, err), 0) end
    return s
end

local function write_atomic(path, s) files.write_atomic(path, s, "report") end

local function read_json(path)
    local ok, v = pcall(cjson.decode, read_file(path))
    if not ok then error(string.format("report: '%s' is not valid JSON: %s", path, v), 0) end
    return v
end

-- ---- the loss curves ----------------------------------------------------------------

local function split(line, sep)
    local cells, start = {}, 1
    while true do
        local i = line:find(sep, start, true)
        cells[#cells + 1] = line:sub(start, (i or 0) - 1)
        if not i then return cells end
        start = i + #sep
    end
end

-- A CSV cell as a number; NaN for an empty or unreadable one (a gap).
local function cell_number(s)
    s = s:match("^%s*(.-)%s*$"):lower()
    local v = tonumber(s)
    if v then return v end
    if s == "inf" or s == "+inf" then return math.huge end
    if s == "-inf" then return -math.huge end
    return 0 / 0
end

-- The columns of a CSVLogger file: {names = {...}, [name] = {values}}, rows
-- ordered by epoch with a repeated epoch keeping its last row.
function report.read_history(path, sep)
    sep = sep or ","
    local lines = {}
    for line in (read_file(path) .. "\n"):gmatch("([^\n]*)\n") do
        line = line:gsub("\r$", "")
        if line ~= "" then lines[#lines + 1] = line end
    end
    if #lines == 0 then error(string.format("report: '%s' is empty (no CSV header)", path), 0) end
    local names = split(lines[1], sep)
    if names[1] ~= "epoch" then
        error(string.format("report: '%s' does not start with an 'epoch' column (header: %s)", path, lines[1]), 0)
    end
    local by_epoch, epochs = {}, {}
    for n = 2, #lines do
        local cells = split(lines[n], sep)
        local epoch = cell_number(cells[1])
        if epoch == epoch then
            if not by_epoch[epoch] then epochs[#epochs + 1] = epoch end
            by_epoch[epoch] = cells
        end
    end
    table.sort(epochs)
    local columns = { names = names }
    for k, name in ipairs(names) do
        local values = {}
        for i, e in ipairs(epochs) do values[i] = cell_number(by_epoch[e][k] or "") end
        columns[name] = values
    end
    return columns
end

-- True when the positive values span more than two decades.
local function wide_range(lists)
    local lo, hi
    for _, list in ipairs(lists) do
        for _, v in ipairs(list) do
            if v > 0 and v < math.huge then lo, hi = math.min(lo or v, v), math.max(hi or v, v) end
        end
    end
    return lo ~= nil and hi / lo > 100
end

function report.loss_png(history_csv, png, opts)
    opts = opts or {}
    if type(history_csv) ~= "string" then error("report.loss_png: history_csv must be a path", 2) end
    if type(png) ~= "string" then error("report.loss_png: png must be a path", 2) end
    local h = report.read_history(history_csv, opts.separator or ",")
    if not h.loss then
        error(string.format("report: '%s' has no 'loss' column (columns: %s)", history_csv,
            table.concat(h.names, ", ")), 0)
    end
    local series = { { name = "train loss", x = h.epoch, y = h.loss } }
    if h.val_loss then series[2] = { name = "validation loss", x = h.epoch, y = h.val_loss } end
    local logy = opts.logy
    if logy == nil then logy = wide_range({ h.loss, h.val_loss or {} }) end
    plot.lines { path = png, title = opts.title or "Loss per epoch", xlabel = "epoch",
        ylabel = "loss", series = series, logy = logy }
end

-- ---- HTML -----------------------------------------------------------------------------

local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

function report.escape(s)
    return (tostring(s):gsub("[&<>\"']", ESCAPES))
end
local esc = report.escape

local function format_value(v)
    if v == cjson.null or v == nil then return "" end
    if type(v) ~= "number" then
        if type(v) == "table" then return cjson.encode(v) end
        return tostring(v)
    end
    if v ~= v then return "NaN" end
    if v == math.huge then return "∞" end
    if v == -math.huge then return "-∞" end
    if math.type(v) == "integer" or (v == math.floor(v) and math.abs(v) < 1e15) then
        return string.format("%d", v)
    end
    return string.format("%.4g", v)
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    return keys
end

local function is_list(t)
    return type(t) == "table" and (#t > 0 or next(t) == nil)
end

-- Leaves of a nested table as {parts = {"a", "b"}, path = "a.b", value =} in
-- key order; lists stay whole values.  parts keeps keys that hold a dot
-- ("0.01", a false match rate) whole.
local function flatten(t, prefix, out)
    out = out or {}
    for _, k in ipairs(sorted_keys(t)) do
        local parts = { table.unpack(prefix or {}) }
        parts[#parts + 1] = tostring(k)
        local v = t[k]
        if type(v) == "table" and not is_list(v) then flatten(v, parts, out)
        else out[#out + 1] = { parts = parts, path = table.concat(parts, "."), value = v } end
    end
    return out
end

local function table_html(header, rows, class)
    local out = { string.format('<table class="%s"><thead><tr>', class or "") }
    for _, h in ipairs(header) do out[#out + 1] = "<th>" .. esc(h) .. "</th>" end
    out[#out + 1] = "</tr></thead><tbody>"
    for _, row in ipairs(rows) do
        out[#out + 1] = "<tr>"
        for i, cellv in ipairs(row) do
            out[#out + 1] = (i == 1 and "<th>" or "<td>") .. esc(cellv) .. (i == 1 and "</th>" or "</td>")
        end
        out[#out + 1] = "</tr>"
    end
    out[#out + 1] = "</tbody></table>"
    return table.concat(out)
end

local function key_value_table(t)
    local rows = {}
    for _, leaf in ipairs(flatten(t)) do rows[#rows + 1] = { leaf.path, format_value(leaf.value) } end
    return table_html({ "key", "value" }, rows, "kv")
end

-- whole/region x damaged/restored x mse/psnr/ssim, one row per image set.
local function quality_table(metrics)
    local rows = {}
    for _, scope in ipairs({ "whole", "region" }) do
        for _, which in ipairs({ "damaged", "restored" }) do
            local m = type(metrics[scope]) == "table" and metrics[scope][which]
            if type(m) == "table" then
                rows[#rows + 1] = { scope .. " image, " .. which, format_value(m.mse),
                    type(m.psnr) == "number" and m.psnr == m.psnr and math.abs(m.psnr) < math.huge
                        and string.format("%.2f", m.psnr) or format_value(m.psnr),
                    format_value(m.ssim) }
            end
        end
    end
    if #rows == 0 then return nil end
    return table_html({ "vs clean", "MSE", "PSNR (dB)", "SSIM" }, rows, "quality")
end

-- Readable names for the first key of fp.evaluate's measures.
local IDENTITY_NAMES = { gmr = "GMR at FMR", eer = "EER", genuine = "genuine score",
    by_damage = "genuine score, damage" }

-- The identity table (fp.evaluate's result): every leaf whose path holds
-- "damaged" or "restored" becomes a row named by the rest of the path with
-- one column each; other leaves (impostor scores, thresholds) go below.
local function identity_tables(identity)
    local rows, index, other = {}, {}, {}
    for _, leaf in ipairs(flatten(identity)) do
        local parts, which = {}, nil
        for _, part in ipairs(leaf.parts) do
            if (part == "damaged" or part == "restored") and not which then which = part
            else parts[#parts + 1] = IDENTITY_NAMES[part] and #parts == 0 and IDENTITY_NAMES[part] or part end
        end
        local name = table.concat(parts, " ")
        if which then
            if not index[name] then
                rows[#rows + 1] = { name, "", "" }
                index[name] = rows[#rows]
            end
            index[name][which == "damaged" and 2 or 3] = format_value(leaf.value)
        else
            other[#other + 1] = { leaf.path, format_value(leaf.value) }
        end
    end
    local html = {}
    if #rows > 0 then html[1] = table_html({ "measure", "damaged", "restored" }, rows, "identity") end
    if #other > 0 then html[#html + 1] = table_html({ "key", "value" }, other, "kv") end
    return table.concat(html)
end

local function metrics_sections(metrics)
    local out, rest = {}, {}
    local quality = quality_table(metrics)
    if quality then out[#out + 1] = "<h2>Image quality</h2>" .. quality end
    if type(metrics.identity) == "table" then
        out[#out + 1] = "<h2>Identity (fingerprint matching)</h2>" .. identity_tables(metrics.identity)
    end
    for k, v in pairs(metrics) do
        if k ~= "whole" and k ~= "region" and k ~= "identity" then rest[k] = v end
    end
    if next(rest) then out[#out + 1] = "<h2>Run</h2>" .. key_value_table(rest) end
    return table.concat(out, "\n")
end

report.FIGURES = {
    { file = "loss.png", caption = "Training and validation loss per epoch." },
    { file = "samples.png", caption = "Test images: clean, damaged and restored, with each image's metrics." },
    { file = "gradcam.png", caption = "Grad-CAM: the input regions that drive the restoration." },
    { file = "minutiae.png", caption = "Minutiae found in the clean and restored images." },
}

local function figures_section(run_dir)
    local out = {}
    for _, f in ipairs(report.FIGURES) do
        if exists(run_dir .. "/" .. f.file) then
            out[#out + 1] = string.format('<figure><img src="%s" alt="%s"><figcaption>%s</figcaption></figure>',
                esc(f.file), esc(f.file), esc(f.caption))
        end
    end
    if #out == 0 then return "" end
    return "<h2>Figures</h2>\n" .. table.concat(out, "\n")
end

local STYLE = [[
body { font-family: "DejaVu Sans", sans-serif; margin: 24px; color: #222; max-width: 1150px; }
h1 { font-size: 24px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
td { font-variant-numeric: tabular-nums; } thead th { background: #f2f2f2; }
figure { margin: 12px 0 24px 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; margin-top: 4px; }
]]

local function basename(path)
    return (path:gsub("/+$", ""):match("([^/]+)$")) or path
end

function report.write_html(run_dir, opts)
    if type(run_dir) ~= "string" or run_dir == "" then error("report.write_html: run_dir must be a folder path", 2) end
    opts = opts or {}
    if opts.loss_png ~= false and not exists(run_dir .. "/loss.png") and exists(run_dir .. "/history.csv") then
        report.loss_png(run_dir .. "/history.csv", run_dir .. "/loss.png")
    end
    local title = opts.title or ("whorl run " .. basename(run_dir))
    local body = { "<h1>" .. esc(title) .. "</h1>" }
    if exists(run_dir .. "/config.json") then
        body[#body + 1] = "<h2>Configuration</h2>" .. key_value_table(read_json(run_dir .. "/config.json"))
    end
    if exists(run_dir .. "/metrics.json") then
        body[#body + 1] = metrics_sections(read_json(run_dir .. "/metrics.json"))
    end
    body[#body + 1] = figures_section(run_dir)
    local html = table.concat({
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>" .. esc(title) .. "</title>", "<style>" .. STYLE .. "</style></head><body>",
        table.concat(body, "\n"), "</body></html>", "" }, "\n")
    local path = run_dir .. "/report.html"
    write_atomic(path, html)
    return path
end

-- ---- headless rendering ---------------------------------------------------------------

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function find_chromium(browser)
    for _, name in ipairs(browser and { browser } or { "chromium", "chromium-browser", "google-chrome" }) do
        local p = io.popen("command -v " .. shell_quote(name) .. " 2>/dev/null")
        local found = p:read("l")
        p:close()
        if found and found ~= "" then return found end
    end
    return nil
end

local function absolute(path)
    if path:sub(1, 1) == "/" then return path end
    local p = io.popen("pwd")
    local cwd = p:read("l")
    p:close()
    return cwd .. "/" .. path
end

local function file_url(path)
    return "file://" .. absolute(path):gsub("[^%w/%._~%-]", function(c) return string.format("%%%02X", c:byte()) end)
end

local function tail(path, n)
    local f = io.open(path, "r")
    if not f then return "" end
    local s = f:read("a")
    f:close()
    return s:sub(-n)
end

function report.render_png(html, png, opts)
    opts = opts or {}
    if type(html) ~= "string" or not exists(html) then
        error(string.format("report.render_png: no page '%s'", tostring(html)), 2)
    end
    if type(png) ~= "string" or png == "" then error("report.render_png: png must be a path", 2) end
    local chromium = find_chromium(opts.browser)
    if not chromium then
        return false, (opts.browser or "chromium (or chromium-browser)") .. " is not installed"
    end
    local tmp = string.format("%s.tmp-%d-%d.png", png, os.time(), math.random(0, 1 << 30))
    local profile = os.tmpname()
    os.remove(profile) -- chromium makes the folder: its own profile, so parallel runs do not collide
    local log = profile .. ".log"
    -- env -u LD_PRELOAD: a preloaded runtime (the sanitizer test run's ASan)
    -- makes chromium's own processes abort.
    local cmd = string.format(
        "env -u LD_PRELOAD timeout %d %s --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir=%s " ..
        "--screenshot=%s --window-size=%d,%d %s >%s 2>&1",
        opts.timeout or 60, shell_quote(chromium), shell_quote(profile), shell_quote(tmp),
        opts.width or 1200, opts.height or 2000, shell_quote(file_url(html)), shell_quote(log))
    local ok = os.execute(cmd)
    local reason = not ok and ("chromium failed: " .. tail(log, 400)) or nil
    if ok and not exists(tmp) then reason = "chromium wrote no screenshot: " .. tail(log, 400) end
    os.execute("rm -rf " .. shell_quote(profile) .. " " .. shell_quote(log))
    if reason then
        os.remove(tmp)
        return false, reason
    end
    local renamed, rerr = os.rename(tmp, png)
    if not renamed then
        os.remove(tmp)
        return false, string.format("cannot write '%s': %s", png, rerr)
    end
    return true
end

return report
