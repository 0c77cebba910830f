-- The reconstruction job (experiments/reconstruct.lua through bin/whorl):
-- the run folder's files and keys, --resume, --data, and option errors.
-- Tiny runs (32x32 prints, a few fingers, one or two epochs): seconds.
local whorl = require "whorl"
local shell = require "helpers.shell"
local job = require "whorl.jobs.reconstruct"

local TINY = "--size 32 --fingers 4 --impressions 2 --test-fingers 2 --batch-size 4 --quiet "

local function reconstruct(args)
    return shell.run(shell.whorl() .. "reconstruct " .. args)
end

local function read_json(path)
    local v = job.read_json(path)
    assert.is_table(v, path .. " is missing")
    return v
end

local function has(module, ...)
    local ok, m = pcall(require, module)
    if not ok or type(m) ~= "table" then return false end
    for _, fn in ipairs({ ... }) do if type(m[fn]) ~= "function" then return false end end
    return true
end

local function history_rows(path)
    local rows = {}
    for line in io.lines(path) do rows[#rows + 1] = line end
    return rows
end

describe("whorl reconstruct", function()
    local dir
    before_each(function() dir = shell.tmpdir() end)
    after_each(function() shell.remove(dir) end)

    it("fills the run folder with the contract's files and keys", function()
        local out, code = reconstruct(TINY .. "--epochs 1 --out " .. dir)
        assert.are.equal(0, code, out)
        for _, f in ipairs({ "config.json", "history.csv", "metrics.json", "model.safetensors", "samples.png" }) do
            assert.is_true(shell.exists(dir .. "/" .. f), f .. " is missing")
        end
        if has("whorl.report", "loss_png", "write_html") then
            assert.is_true(shell.exists(dir .. "/loss.png"), "loss.png is missing")
            assert.is_true(shell.exists(dir .. "/report.html"), "report.html is missing")
        end
        if has("whorl.gradcam", "compute", "figure") and has("whorl.plot", "heatmap_figure") then
            assert.is_true(shell.exists(dir .. "/gradcam.png"), "gradcam.png is missing")
        end

        local config = read_json(dir .. "/config.json")
        for _, key in ipairs(job.RUN_OPTIONS) do
            if key ~= "data" then assert.is_not_nil(config[key], "config.json lacks " .. key) end
        end
        assert.are.equal("masked", config.model)
        assert.are.same({ 16, 32, 64 }, config.filters)
        assert.are.equal("MaskedUNet", config.architecture)
        assert.are.equal(whorl.version, config.whorl_version)
        assert.are.equal(1, config.epochs)

        local m = read_json(dir .. "/metrics.json")
        for _, region in ipairs({ "whole", "region" }) do
            for _, which in ipairs({ "damaged", "restored" }) do
                for _, k in ipairs({ "mse", "psnr", "ssim" }) do
                    assert.is_number(m[region][which][k], ("metrics.json lacks %s.%s.%s"):format(region, which, k))
                end
            end
        end
        for _, k in ipairs({ "params", "train_seconds", "seconds", "epochs", "test_images", "final_loss",
            "final_val_loss" }) do
            assert.is_number(m[k], "metrics.json lacks " .. k)
        end
        assert.are.equal(config.params, m.params)
        assert.are.equal(4, m.test_images)
        assert.are.equal(1, m.epochs)
        if m.identity then
            assert.is_table(m.identity.genuine)
            assert.is_nil(m.identity.genuine.restored.scores, "per-print scores belong in by_damage only")
            -- the genuine means per damage kind cover every test print
            local known, count = {}, 0
            for _, kind in ipairs(whorl.synth.damage_kinds) do known[kind] = true end
            for kind, k in pairs(m.identity.by_damage) do
                assert.is_true(known[kind], "unknown damage kind " .. kind)
                assert.is_number(k.damaged)
                assert.is_number(k.restored)
                count = count + k.count
            end
            assert.are.equal(m.test_images, count)
        end

        -- the checkpoint rebuilds the model without the job
        local model = whorl.load(dir .. "/model.safetensors")
        assert.are.same({ 2, 1, 32, 32 }, model(whorl.rand(2, 1, 32, 32)):size())

        -- every file the report references is in the folder
        if shell.exists(dir .. "/report.html") then
            local html = assert(io.open(dir .. "/report.html")):read("a")
            local refs = 0
            for ref in html:gmatch('src="([^"]+)"') do
                refs = refs + 1
                assert.is_true(shell.exists(dir .. "/" .. ref), "report.html references missing " .. ref)
            end
            assert.is_true(refs >= 2, "report.html shows fewer than two figures")
        end
    end)

    it("--resume continues to --epochs in all, as one run would, and refuses other options", function()
        local out, code = reconstruct(TINY .. "--model unet --epochs 1 --out " .. dir .. "/a")
        assert.are.equal(0, code, out)
        out, code = reconstruct("--resume --epochs 2 --out " .. dir .. "/a")
        assert.are.equal(0, code, out)
        assert.are.equal(3, #history_rows(dir .. "/a/history.csv")) -- header + 2 epochs
        assert.are.equal(2, read_json(dir .. "/a/metrics.json").epochs)
        assert.are.equal(2, read_json(dir .. "/a/config.json").epochs)
        out, code = reconstruct(TINY .. "--model unet --epochs 2 --out " .. dir .. "/b")
        assert.are.equal(0, code, out)
        local resumed, straight = whorl.load(dir .. "/a/model.safetensors"), whorl.load(dir .. "/b/model.safetensors")
        local a, b = resumed:state_dict(), straight:state_dict()
        for name, t in pairs(b) do
            assert.are.equal(0, (a[name] - t):abs():max():item(), name .. " differs after resuming")
        end

        out, code = reconstruct("--resume --lr 0.5 --out " .. dir .. "/a")
        assert.are_not.equal(0, code)
        assert.matches("%-%-lr 0.5 differs from the run's 0.001", out)
        out, code = reconstruct("--resume --model masked --out " .. dir .. "/a")
        assert.are_not.equal(0, code)
        assert.matches("%-%-model masked differs from the run's unet", out)
        out, code = reconstruct("--resume --out " .. dir .. "/nothing")
        assert.are_not.equal(0, code)
        assert.matches("no run to resume in .*nothing", out)
    end)

    it("--data trains on a folder of damaged/ and clean/ pairs and names a missing folder", function()
        local clean = whorl.synth.batch{ count = 10, impressions = 2, size = 32, seed = 3, info = false }
        local damaged = whorl.synth.damage(clean, "erasure", { level = "hard", seed = 4 })
        os.execute("mkdir -p " .. dir .. "/pairs/damaged " .. dir .. "/pairs/clean")
        for i = 1, 10 do
            whorl.image.write(("%s/pairs/damaged/%02d.png"):format(dir, i), damaged[i][1])
            whorl.image.write(("%s/pairs/clean/%02d.png"):format(dir, i), clean[i][1])
        end
        local out, code = reconstruct(TINY .. "--model autoencoder100 --filters 4,8 --epochs 1 --data " ..
            dir .. "/pairs --out " .. dir .. "/run")
        assert.are.equal(0, code, out)
        local m = read_json(dir .. "/run/metrics.json")
        assert.are.equal(2, m.test_images) -- 20% of 10
        assert.is_true(m.region.damaged.mse > m.whole.damaged.mse, "the damaged region is where the damage is")

        out, code = reconstruct(TINY .. "--data " .. dir .. "/no_such_folder --out " .. dir .. "/run2")
        assert.are_not.equal(0, code)
        assert.matches("%-%-data: no folder .*no_such_folder", out)
    end)

    it("checks its options before any work", function()
        local cases = {
            { "--size 30 --model unet", "%-%-size 30: unet with 3 levels halves the image 2 times" },
            { "--filters 8,x", "%-%-filters: 'x' is not a positive integer" },
            { "--epochs 0", "%-%-epochs must be a positive integer" },
            { "--kernel-size 4", "%-%-kernel%-size must be odd" },
            { "--lr 0", "%-%-lr must be positive" },
            { "--model resnet", "'%-%-model' must be one of 'autoencoder224'" },
        }
        for _, c in ipairs(cases) do
            local out, code = reconstruct(c[1] .. " --out " .. dir .. "/x")
            assert.are_not.equal(0, code, c[1])
            assert.matches(c[2], out)
        end
        assert.is_false(shell.exists(dir .. "/x/config.json"))
    end)

    it("gives each model its default widths, one per level", function()
        assert.are.same({ 32, 64, 128 }, job.options({ "--model", "autoencoder224" }).filters)
        assert.are.same({ 32, 64 }, job.options({ "--model", "autoencoder100" }).filters)
        local o = job.options({ "--model", "unet", "--filters", "4,8,16", "--size", "32" })
        local model = job.model(o)
        -- level widths 4, 8 and the bottleneck 16: the U-Net with filters = 4, depth = 2
        local same = require("unet"){ filters = 4, depth = 2, seed = o.seed }
        assert.are.equal(job.params(same), job.params(model))
        assert.are.equal(0, (model(whorl.ones(1, 1, 32, 32)) - same(whorl.ones(1, 1, 32, 32))):abs():max():item())
    end)

    it("teaches the mask head a print's whole damage, or none when it barely shows", function()
        local data = require "whorl.jobs.reconstruct_data"
        local clean = whorl.synth.batch{ count = 3, size = 32, dpi = 250, seed = 4, info = false }
        local mask = whorl.zeros(3, 1, 32, 32)
        mask:narrow(1, 1, 2):fill_(1)                    -- prints 1 and 2: damage everywhere
        mask:narrow(1, 3, 1):narrow(3, 1, 8):fill_(1)    -- print 3: the top 8 rows
        local damaged = whorl.cat({
            (clean:narrow(1, 1, 1) + 0.01):clamp(0, 1),   -- a change too light to flag
            clean:narrow(1, 2, 1) * 0.5 + 0.4,             -- faint: all of it, ridges and valleys
            clean:narrow(1, 3, 1) * (1 - mask:narrow(1, 3, 1)) + mask:narrow(1, 3, 1) }, 1) -- erased rows
        local v = data.visible(mask, damaged, clean)
        assert.are.equal(0, v:narrow(1, 1, 1):abs():max():item())
        assert.are.equal(0, (v:narrow(1, 2, 1) - 1):abs():max():item())
        assert.are.equal(0, (v:narrow(1, 3, 1) - mask:narrow(1, 3, 1)):abs():max():item())
    end)

    it("damages every test print, drawing again only where a draw changed nothing", function()
        local data = require "whorl.jobs.reconstruct_data"
        -- a blank print: no damage that needs ridges (a smudge, a cut) shows on it
        local clean = whorl.cat({ whorl.synth.batch{ count = 5, size = 32, dpi = 250, seed = 8, info = false },
            whorl.ones(3, 1, 32, 32) }, 1)
        local t = data.damage_test(clean, 21)
        local once = whorl.synth.damage(clean, "random", { level = "random", seed = 21 })
        local changed = (t.damaged - clean):abs():reshape(8, -1):max(2):totable()
        local first = (once - clean):abs():reshape(8, -1):max(2):totable()
        local same = (once - t.damaged):abs():reshape(8, -1):max(2):totable()
        assert.are.equal(8, #t.kinds)
        assert.are.same({ 8, 1, 32, 32 }, t.mask:size())
        local redrawn = 0
        for i = 1, 8 do if first[i] == 0 then redrawn = redrawn + 1 end end
        assert.is_true(redrawn > 0, "the first draw changed every print: nothing to draw again")
        for i = 1, 8 do
            assert.is_true(changed[i] > 0, "test print " .. i .. " is undamaged")
            if first[i] > 0 then assert.are.equal(0, same[i], "print " .. i .. " was drawn again") end
        end
    end)

    it("gives the masked model L1 and its print-level gain, the others MSE", function()
        local o = job.options({ "--filters", "4,8", "--size", "32" })
        assert.are.equal("l1", o.loss)
        local model = job.model(o)
        assert.is_true(model.standardize and model.input_skip and model.affine)
        assert.are.equal("mse", job.options({ "--model", "unet" }).loss)
        assert.are.equal("mse", job.options({ "--model", "masked", "--loss", "mse" }).loss)
    end)
end)
