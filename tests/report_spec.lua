-- whorl.report on a run folder built by hand: the loss figure from a
-- CSVLogger history, the HTML page (tables from config.json and
-- metrics.json, only figures that exist, escaped text, atomic write), and the
-- headless-chromium screenshot of it (pending when chromium is absent).
local whorl = require "whorl"
local cjson = require "cjson"
local plot = require "whorl.plot"
local report = require "whorl.report"
local files = require "helpers.files"

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p " .. TMP))

local function list_dir(dir)
    local names, p = {}, io.popen("ls -A '" .. dir .. "'")
    for n in p:lines() do names[#names + 1] = n end
    p:close()
    table.sort(names)
    return names
end

-- renaming a file onto itself succeeds exactly when it exists
local function exists(path) return os.rename(path, path) ~= nil end

local HOSTILE = "<script>alert('x')</script> & \"more\""

local METRICS = {
    whole = { damaged = { mse = 0.05, psnr = 13.01, ssim = 0.41 }, restored = { mse = 0.01, psnr = 20, ssim = 0.83 } },
    region = { damaged = { mse = 0.2, psnr = 7, ssim = 0.1 }, restored = { mse = 0.02, psnr = 17.25, ssim = 0.7 } },
    params = 123456, train_seconds = 12.5, epochs = 3, test_images = 10,
    identity = {
        genuine = { damaged = { mean = 0.3 }, restored = { mean = 0.6 } },
        impostor = { count = 90, mean = 0.05 },
        gmr = { damaged = { ["0.01"] = 0.4 }, restored = { ["0.01"] = 0.9 } },
        eer = { damaged = 0.2, restored = 0.05 },
    },
}

-- A run folder as the reconstruction job leaves it, before the report.
local function make_run(name)
    local dir = TMP .. "/" .. name
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    files.spit(dir .. "/config.json", cjson.encode({ model = "unet", lr = 0.001, filters = { 32, 64 },
        note = HOSTILE }))
    files.spit(dir .. "/metrics.json", cjson.encode(METRICS))
    files.spit(dir .. "/history.csv",
        "epoch,loss,lr,val_loss\n1,0.5,0.001,0.6\n2,0.2,0.001,0.3\n3,nan,0.001,\n3,0.1,0.001,0.2\n")
    local c = plot.canvas(120, 40)
    c:color(0.2, 0.2, 0.2)
    c:rect(10, 10, 100, 20)
    c:save(dir .. "/samples.png")
    return dir
end

-- The number of pixels of a saved PNG for which pred(r, g, b) holds, and its size.
local function count(path, pred)
    local t = whorl.image.read(path, { grey = false })
    local c, n = t:totable(), 0
    for y = 1, t:size(2) do
        for x = 1, t:size(3) do
            if pred(c[1][y][x], c[2][y][x], c[3][y][x]) then n = n + 1 end
        end
    end
    return n, t:size(3), t:size(2)
end

describe("report.loss_png", function()
    it("reads a CSVLogger history: epochs sorted, a repeated epoch keeps its last row, gaps are NaN", function()
        local dir = make_run("history")
        local h = report.read_history(dir .. "/history.csv")
        assert.are.same({ "epoch", "loss", "lr", "val_loss" }, h.names)
        assert.are.same({ 1, 2, 3 }, h.epoch)
        assert.are.same({ 0.5, 0.2, 0.1 }, h.loss)
        assert.are.same({ 0.6, 0.3, 0.2 }, h.val_loss)
        files.spit(dir .. "/gaps.csv", "epoch,loss\n2,nan\n1,\n3,inf\n")
        local g = report.read_history(dir .. "/gaps.csv")
        assert.are.same({ 1, 2, 3 }, g.epoch)
        assert.is_true(g.loss[1] ~= g.loss[1] and g.loss[2] ~= g.loss[2])
        assert.are.equal(math.huge, g.loss[3])
    end)

    it("draws train and validation curves into a 640x400 PNG", function()
        local dir = make_run("loss")
        report.loss_png(dir .. "/history.csv", dir .. "/loss.png")
        local info = whorl.image.info(dir .. "/loss.png")
        assert.are.same({ 640, 400 }, { info.width, info.height })
        -- the validation curve's orange: red high, blue low
        local orange = count(dir .. "/loss.png", function(r, _, b) return r > 0.9 and b < 0.2 end)
        assert.is_true(orange > 100, "orange pixels: " .. orange)
    end)

    it("names the file when it is missing or has no loss column", function()
        local dir = make_run("bad_history")
        local ok, err = pcall(report.loss_png, dir .. "/none.csv", dir .. "/l.png")
        assert.is_false(ok)
        assert.truthy(err:find(dir .. "/none.csv", 1, true))
        files.spit(dir .. "/noloss.csv", "epoch,mse\n1,0.5\n")
        ok, err = pcall(report.loss_png, dir .. "/noloss.csv", dir .. "/l.png")
        assert.is_false(ok)
        assert.truthy(err:find("noloss.csv' has no 'loss' column (columns: epoch, mse)", 1, true))
        assert.is_false(exists(dir .. "/l.png"))
    end)
end)

describe("report.write_html", function()
    it("references only files that exist, draws loss.png from the history, escapes text", function()
        local dir = make_run("page")
        local path = report.write_html(dir, { title = "Run <1> & co" })
        assert.are.equal(dir .. "/report.html", path)
        local html = files.slurp(path)
        local refs = {}
        for ref in html:gmatch('src="([^"]*)"') do refs[#refs + 1] = ref end
        for ref in html:gmatch('href="([^"]*)"') do refs[#refs + 1] = ref end
        table.sort(refs)
        assert.are.same({ "loss.png", "samples.png" }, refs)
        for _, ref in ipairs(refs) do assert.is_true(exists(dir .. "/" .. ref), ref) end
        assert.is_nil(html:find("gradcam.png", 1, true))
        assert.is_nil(html:find("<script>", 1, true))
        assert.truthy(html:find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;", 1, true))
        assert.truthy(html:find("<title>Run &lt;1&gt; &amp; co</title>", 1, true))
        assert.are.same({ "config.json", "history.csv", "loss.png", "metrics.json", "report.html", "samples.png" },
            list_dir(dir))
    end)

    it("lays the metrics out as tables: image quality, identity, the rest", function()
        local html = files.slurp(report.write_html(make_run("tables")))
        assert.truthy(html:find("<th>whole image, restored</th><td>0.01</td><td>20.00</td><td>0.83</td>", 1, true))
        assert.truthy(html:find("<th>region image, restored</th><td>0.02</td><td>17.25</td><td>0.7</td>", 1, true))
        assert.truthy(html:find("<th>GMR at FMR 0.01</th><td>0.4</td><td>0.9</td>", 1, true))
        assert.truthy(html:find("<th>EER</th><td>0.2</td><td>0.05</td>", 1, true))
        assert.truthy(html:find("<th>impostor.count</th><td>90</td>", 1, true))
        assert.truthy(html:find("<th>params</th><td>123456</td>", 1, true))
        assert.truthy(html:find("<th>filters</th><td>[32,64]</td>", 1, true))
    end)

    it("works on a folder with nothing in it, and names a broken JSON file", function()
        local dir = TMP .. "/empty"
        assert(os.execute("mkdir -p " .. dir))
        local html = files.slurp(report.write_html(dir))
        assert.truthy(html:find("<h1>whorl run empty</h1>", 1, true))
        assert.is_nil(html:find("<img", 1, true))
        files.spit(dir .. "/metrics.json", "{ not json")
        local ok, err = pcall(report.write_html, dir)
        assert.is_false(ok)
        assert.truthy(err:find(dir .. "/metrics.json' is not valid JSON", 1, true))
    end)
end)

describe("report.render_png", function()
    it("returns false and the reason when the browser is absent", function()
        local dir = make_run("nobrowser")
        local html = report.write_html(dir)
        local ok, why = report.render_png(html, dir .. "/page.png", { browser = "no-such-browser-here" })
        assert.is_false(ok)
        assert.truthy(why:find("no-such-browser-here is not installed", 1, true))
        assert.is_false(exists(dir .. "/page.png"))
    end)

    it("screenshots the page with headless chromium: a non-blank PNG of the window size", function()
        local dir = make_run("render")
        local html = report.write_html(dir)
        local ok, why = report.render_png(html, dir .. "/page.png", { width = 800, height = 900 })
        if not ok and why:find("not installed", 1, true) then
            pending("headless render skipped: " .. why)
            return
        end
        assert.is_true(ok, why)
        local dark, w, h = count(dir .. "/page.png", function(r, g, b) return r + g + b < 2.7 end)
        assert.are.same({ 800, 900 }, { w, h })
        assert.is_true(dark > 2000, "non-white pixels: " .. dark)
        for _, name in ipairs(list_dir(dir)) do assert.is_nil(name:find("tmp", 1, true), name) end
    end)
end)
