-- What the reconstruction job makes of a trained model: restored test
-- prints, their scores, and the run folder's figures and report.
--
--   local out = require "whorl.jobs.reconstruct_outputs"
--   local restored, mask = out.restore(model, test.damaged)   -- mask: the masked model's guess
--   local metrics = out.scores(test, restored)                -- whole image and damaged region
--   metrics.identity = out.identity(test, restored, dpi)      -- fp.evaluate, when whorl.fingerprint has it
--   out.samples(dir .. "/samples.png", test, restored, mask)
--   local k = out.showcase(test)                              -- the print with the most local damage
--   out.gradcam(dir .. "/gradcam.png", model, test, k)
--   out.minutiae(dir .. "/minutiae.png", test, restored, dpi, k)
--   out.report(dir, title)                                    -- loss.png, report.html
-- The figures need whorl.plot, whorl.gradcam and whorl.report; a piece
-- that is missing is skipped with a note (samples.png then falls back to a
-- plain image grid), so the job runs with whatever this build has.
local whorl = require "whorl"
local data = require "whorl.jobs.reconstruct_data"
local rows = data.rows

local M = {}

-- A module's table when it loads and has every named function, or nil and why not.
local function optional(name, ...)
    local ok, mod = pcall(require, name)
    if not ok then return nil, name .. " is not available" end
    for _, fn in ipairs({ ... }) do
        if type(mod) ~= "table" or type(mod[fn]) ~= "function" then
            return nil, name .. " has no " .. fn
        end
    end
    return mod
end
M.optional = optional

local function note(fmt, ...) io.stderr:write("reconstruct: ", string.format(fmt, ...), "\n") end

-- The model's outputs over x in batches, in eval mode without gradients:
-- the restored prints and, when the model returns one (models/masked.lua),
-- its damage mask.
function M.restore(model, x, batch_size)
    batch_size = batch_size or 32
    local was_training = model.training
    model:eval()
    local outs, masks = {}, {}
    whorl.no_grad(function()
        local n = x:size()[1]
        for at = 1, n, batch_size do
            local y, m = model(x:narrow(1, at, math.min(batch_size, n - at + 1)))
            outs[#outs + 1] = y
            if whorl.is_tensor(m) then masks[#masks + 1] = m end
        end
    end)
    model:train(was_training)
    return whorl.cat(outs, 1), #masks == #outs and whorl.cat(masks, 1) or nil
end

-- 1 where t > 0.5, else 0 (t in [0, 1]).
local function binary(t) return ((t - 0.5) * 1e6):clamp(0, 1) end

-- The prints whose damage mask is not empty (a region metric needs pixels).
local function damaged_rows(mask)
    local n = mask:size()[1]
    local counts = binary(mask):view(n, -1):sum(2):totable()
    local idx = {}
    for i = 1, n do if counts[i] > 0 then idx[#idx + 1] = i end end
    return idx
end


-- whorl.metrics.compare over the whole image (every test print) and over
-- the damaged region (the prints that have one).
function M.scores(test, restored)
    local metrics = whorl.metrics.compare(test.clean, test.damaged, restored)
    metrics.test_images = test.clean:size()[1]
    local idx = damaged_rows(test.mask)
    if #idx > 0 then
        local sub = #idx == metrics.test_images and test or { clean = rows(test.clean, idx),
            damaged = rows(test.damaged, idx), mask = rows(test.mask, idx) }
        local r = whorl.metrics.compare(sub.clean, sub.damaged, #idx == metrics.test_images and restored
            or rows(restored, idx), { mask = sub.mask })
        metrics.region, metrics.region_images = r.region, #idx
    end
    return metrics
end

-- The mean genuine scores of damaged and restored prints per damage kind:
-- where restoring helps the matcher and where it costs it.
local function by_damage(kinds, genuine)
    local out = {}
    for i, kind in ipairs(kinds) do
        local k = out[kind] or { count = 0, damaged = 0, restored = 0 }
        k.count = k.count + 1
        k.damaged = k.damaged + genuine.damaged.scores[i]
        k.restored = k.restored + genuine.restored.scores[i]
        out[kind] = k
    end
    for _, k in pairs(out) do k.damaged, k.restored = k.damaged / k.count, k.restored / k.count end
    return out
end

-- Identity: fp.evaluate over the test prints (genuine and impostor match
-- scores of damaged and restored prints against the clean ones, and with
-- test.kinds their means per damage kind: by_damage), or nil.
function M.identity(test, restored, dpi)
    local fp, why = optional("whorl.fingerprint", "evaluate")
    if not fp then return nil, why end
    if not test.fingers then return nil, "the test prints' names give no fingers" end
    local s = test.clean:size()
    local function planes(t) return t:contiguous():view(s[1], s[3], s[4]) end
    local ok, res = pcall(fp.evaluate, { clean = planes(test.clean), damaged = planes(test.damaged),
        restored = planes(restored), fingers = test.fingers, dpi = dpi, fmr = { 0.01, 0.001 }, scores = true })
    if not ok then return nil, "fp.evaluate failed: " .. tostring(res) end
    if test.kinds then res.by_damage = by_damage(test.kinds, res.genuine) end
    res.genuine.damaged.scores, res.genuine.restored.scores = nil, nil
    return res
end

-- Up to `count` print numbers spread evenly over n.
local function spread(n, count)
    local idx = {}
    for i = 1, math.min(count, n) do idx[i] = (i - 1) * n // math.min(count, n) + 1 end
    return idx
end

-- samples.png: 10 test prints, rows clean, damaged, restored (and the
-- masked model's mask), each image captioned with its PSNR/SSIM against
-- the clean print (the mask with its IoU against the visible damage, the
-- mask head's target: reconstruct_data.visible).
function M.samples(path, test, restored, mask)
    local idx = spread(test.clean:size()[1], 10)
    local clean = rows(test.clean, idx)
    local function row(label, t, caption_of)
        local images, captions = {}, {}
        for i = 1, #idx do
            images[i] = t[i][1]
            captions[i] = caption_of and caption_of(i) or nil
        end
        return { label = label, images = images, captions = captions }
    end
    local function quality(t)
        local _, psnr = whorl.metrics.psnr(t, clean)
        local _, ssim = whorl.metrics.ssim(t, clean)
        return function(i) return ("%.1f dB %.2f"):format(psnr[i], ssim[i]) end
    end
    local damaged, out = rows(test.damaged, idx), rows(restored, idx)
    local grid = { row("clean", clean), row("damaged", damaged, quality(damaged)),
        row("restored", out, quality(out)) }
    if mask then
        local guess, truth = binary(rows(mask, idx)), binary(data.visible(rows(test.mask, idx), damaged, clean))
        local n = #idx
        local inter = (guess * truth):view(n, -1):sum(2):totable()
        local union = (guess + truth - guess * truth):view(n, -1):sum(2):totable()
        grid[#grid + 1] = row("mask", rows(mask, idx), function(i)
            return union[i] > 0 and ("IoU %.2f"):format(inter[i] / union[i]) or "no damage"
        end)
    end
    local plot = optional("whorl.plot", "image_grid")
    if plot then
        plot.image_grid{ path = path, rows = grid, cell = math.max(96, math.min(160, test.clean:size()[3])) }
        return
    end
    note("whorl.plot is missing: samples.png without captions")
    local strips = {}
    for r, g in ipairs(grid) do strips[r] = whorl.cat(g.images, 2) end
    whorl.image.write(path, whorl.cat(strips, 1))
end

-- The test print with the most local damage (a mask over less than half
-- the print: noise, blur and the like cover all of it, which would show
-- nothing in particular), for the figures of one print.
function M.showcase(test)
    local s = test.mask:size()
    local counts = binary(test.mask):view(s[1], -1):sum(2):totable()
    local k, half = 1, s[3] * s[4] / 2
    local function better(i)
        local local_i, local_k = counts[i] < half, counts[k] < half
        if local_i ~= local_k then return local_i end
        return counts[i] > counts[k]
    end
    for i = 2, s[1] do if better(i) then k = i end end
    return k
end

-- gradcam.png: where the model looked to restore the damaged pixels of
-- test print k (score "mask": its output inside the mask).
function M.gradcam(path, model, test, k)
    local gradcam, why = optional("whorl.gradcam", "compute", "figure")
    if not gradcam then return nil, why end
    local input = test.damaged:narrow(1, k, 1)
    local ok, err = pcall(function()
        -- the masked model's last convolutions are its 1-channel heads: look
        -- at the trunk's last layer instead (the default for the others)
        local layers = model.trunk and gradcam.conv_layers(model.trunk)
        local heat = gradcam.compute(model, input, { score = "mask", mask = test.mask[k][1],
            layer = layers and layers[#layers] or nil })
        gradcam.figure{ path = path, image = input[1][1], heat = heat[1],
            title = ("Grad-CAM of the restored damage, test print %d"):format(k) }
    end)
    if not ok then return nil, "Grad-CAM failed: " .. tostring(err) end
    return true
end

-- minutiae.png: the minutiae of test print k, clean against restored, with
-- the pairs the matcher found (and the damaged print's score in the title).
function M.minutiae(path, test, restored, dpi, k)
    local fp, why = optional("whorl.fingerprint", "extract", "match", "draw_pairs")
    if not fp then return nil, why end
    local ok, err = pcall(function()
        local clean, damaged, out = test.clean[k][1], test.damaged[k][1], restored[k][1]
        local tc = fp.extract(clean, { dpi = dpi })
        local td, tr = fp.extract(damaged, { dpi = dpi }), fp.extract(out, { dpi = dpi })
        local score_d = fp.match(tc, td, { dpi = dpi })
        local score_r, pairs = fp.match(tc, tr, { dpi = dpi })
        fp.draw_pairs{ path = path, image_a = clean, image_b = out, template_a = tc, template_b = tr,
            pairs = pairs, title = ("test print %d, clean vs restored: score %.3f, %d pairs (damaged: %.3f)")
                :format(k, score_r, #pairs, score_d) }
    end)
    if not ok then return nil, "minutiae figure failed: " .. tostring(err) end
    return true
end

-- loss.png and report.html (whorl.report), last, once every file is there.
function M.report(dir, title)
    local report, why = optional("whorl.report", "loss_png", "write_html")
    if not report then return nil, why end
    local ok, err = pcall(function()
        report.loss_png(dir .. "/history.csv", dir .. "/loss.png")
        report.write_html(dir, { title = title })
    end)
    if not ok then return nil, "whorl.report failed: " .. tostring(err) end
    return true
end

-- The test scores as a table on stdout.
function M.print_scores(metrics, about)
    print(("\nTest set (%s):"):format(about))
    print(("%-8s %-9s %10s %10s %8s"):format("region", "prints", "MSE", "PSNR", "SSIM"))
    for _, region in ipairs({ "whole", "region" }) do
        for _, which in ipairs({ "damaged", "restored" }) do
            local m = metrics[region] and metrics[region][which]
            if m then
                print(("%-8s %-9s %10.5f %7.2f dB %8.3f"):format(region == "region" and "damaged" or "whole",
                    which, m.mse, m.psnr, m.ssim))
            end
        end
    end
    local id = metrics.identity
    if id then
        print(("\nIdentity (%d genuine pairs, %d impostor pairs; minutiae matching, %.0f s):")
            :format(id.genuine.restored.count or 0, id.impostor.count or 0, id.seconds or 0))
        print(("%-9s %14s %12s %12s %8s %18s"):format("prints", "genuine score", "GMR@FMR1%",
            "GMR@FMR0.1%", "EER", "minutiae P / R"))
        for _, which in ipairs({ "damaged", "restored" }) do
            local gmr, mn = id.gmr[which] or {}, id.minutiae and id.minutiae[which] or {}
            print(("%-9s %14.3f %12.3f %12.3f %8.3f %8.3f / %.3f"):format(which, id.genuine[which].mean,
                gmr["0.01"] or 0 / 0, gmr["0.001"] or 0 / 0, id.eer[which] or 0 / 0,
                mn.precision or 0 / 0, mn.recall or 0 / 0))
        end
        local clean = id.clean or {}
        print(("(impostor mean score %.3f; a clean print has %.1f minutiae on average, %.0f%% at least one)")
            :format(id.impostor.mean, clean.minutiae or 0 / 0, 100 * (clean.matchable or 0 / 0)))
        if id.by_damage then
            print("\nGenuine score by damage kind:")
            print(("%-18s %6s %9s %9s"):format("damage", "prints", "damaged", "restored"))
            local kinds = {}
            for kind in pairs(id.by_damage) do kinds[#kinds + 1] = kind end
            table.sort(kinds)
            for _, kind in ipairs(kinds) do
                local k = id.by_damage[kind]
                print(("%-18s %6d %9.3f %9.3f"):format(kind, k.count, k.damaged, k.restored))
            end
        end
    end
end

return M
