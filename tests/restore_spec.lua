-- `whorl restore`: image files of other sizes than the model's, in tile and
-- resize mode, come back with their size, format and bit depth; tiles are
-- put back exactly where they came from; bad files and models give errors
-- that name them while the other files are still restored.
local whorl = require "whorl"
local nn = require "whorl.nn"
local cjson = require "cjson"
local restore = require "whorl.cli.restore"
local files = require "helpers.files"
local autoencoder = require "autoencoder224"

local shell = require "helpers.shell"
local tmpdir, run, exists = shell.tmpdir, shell.run, shell.exists
local check = require "helpers.check"
local max_diff = check.max_diff

-- A model whose output is its input: a 1x1 convolution with weight 1.
local function identity_model(size)
    local conv = nn.Conv2d(1, 1, 1)
    local model = nn.Sequential{ nn.Input{ shape = { 1, size, size } }, conv }
    whorl.no_grad(function()
        conv.weight:fill_(1)
        conv.bias:fill_(0)
    end)
    return model
end

describe("whorl restore tiling", function()
    it("covers every pixel with tiles that share at least the overlap", function()
        assert.are.same({ 0, 24, 48, 68 }, restore.tile_offsets(100, 32, 8))
        assert.are.same({ 0 }, restore.tile_offsets(32, 32, 8))
        assert.are.same({ 0 }, restore.tile_offsets(20, 32, 8))
        assert.are.same({ 0, 32, 64, 68 }, restore.tile_offsets(100, 32, 0))
    end)

    it("puts tiles back where they came from: an identity model gives the image back", function()
        local model = identity_model(16)
        whorl.manual_seed(3)
        for _, shape in ipairs({ { 45, 37 }, { 16, 16 }, { 10, 7 }, { 70, 12 } }) do
            local img = whorl.rand(shape[1], shape[2])
            for _, overlap in ipairs({ 0, 4, 8 }) do
                local out = restore.restore_tiled(model, img, { 16, 16 }, overlap, 3)
                assert.are.same(shape, out:size())
                assert.is_true(max_diff(out, img) < 1e-5, string.format("%dx%d overlap %d: off by %g", shape[1],
                    shape[2], overlap, max_diff(out, img)))
            end
        end
    end)

    it("blends overlapping tiles with weights that sum to one across a seam", function()
        local w = restore.window(16, 16, 4):select(1, 8) -- a row through the middle
        local row = w:totable()
        for i = 1, 4 do
            -- the falling edge of one tile and the rising edge of the next, 4 pixels apart
            assert.is_true(math.abs(row[12 + i] + row[i] - 1) < 1e-6)
        end
        assert.is_true(row[1] > 0 and row[8] == 1)
    end)
end)

describe("whorl restore (command line)", function()
    local dir, model_path

    setup(function()
        dir = tmpdir()
        os.execute("mkdir -p '" .. dir .. "/in/sub' '" .. dir .. "/run'")
        model_path = dir .. "/run/model.safetensors"
        whorl.save(autoencoder{ input_size = 32, filters = { 4, 8 }, seed = 1 }, model_path)
        local prints = whorl.synth.batch{ count = 3, size = 96, seed = 2, info = false }
        whorl.image.write(dir .. "/in/a.bmp", whorl.image.resize(prints[1][1], 50, 70))
        whorl.image.write(dir .. "/in/b.tif", whorl.image.resize(prints[2][1], 100, 40), { bits = 16 })
        whorl.image.write(dir .. "/in/sub/c.png", whorl.image.resize(prints[3][1], 20, 20))
        files.spit(dir .. "/in/corrupt.png", "\137PNG\r\n\26\nnot really a png")
    end)

    teardown(function() shell.remove(dir) end)

    local function check_outputs(out)
        for _, e in ipairs({ { "a.bmp", 50, 70, "BMP", 8 }, { "b.tif", 100, 40, "TIFF", 16 },
            { "sub/c.png", 20, 20, "PNG", 8 } }) do
            local info = whorl.image.info(out .. "/" .. e[1])
            assert.are.same({ e[2], e[3], e[4], e[5] }, { info.height, info.width, info.format, info.depth })
        end
    end

    for _, mode in ipairs({ "tile", "resize" }) do
        it("restores BMP, TIFF and PNG files of other sizes in " .. mode .. " mode, reporting the corrupt one", function()
            local out = dir .. "/out-" .. mode
            local text, code = run(shell.whorl() .. "restore --quiet --mode " .. mode .. " --model " .. model_path ..
                " " .. dir .. "/in --out " .. out)
            assert.are.equal(1, code, text)
            assert.matches(dir .. "/in/corrupt.png: ", text, 1, true)
            assert.matches("1 of 4 inputs failed (restored 3)", text, 1, true)
            check_outputs(out)
            assert.is_false(exists(out .. "/corrupt.png"))
        end)
    end

    it("turns a colour JPEG into a grey JPEG of its size and keeps a 16-bit PGM 16-bit", function()
        local fx = "tests/fixtures/image/"
        restore.run({ "--quiet", "--model", model_path, fx .. "rgb.jpg", fx .. "grey16.pgm", "--out", dir .. "/fx" })
        local jpg, out_jpg = whorl.image.info(fx .. "rgb.jpg"), whorl.image.info(dir .. "/fx/rgb.jpg")
        assert.are.same({ jpg.height, jpg.width, "JPEG" }, { out_jpg.height, out_jpg.width, out_jpg.format })
        -- stb writes every JPEG with three components: a grey print has them equal
        local back = whorl.image.read(dir .. "/fx/rgb.jpg", { grey = false })
        assert.is_true(max_diff(back[1], back[2]) < 0.02 and max_diff(back[1], back[3]) < 0.02)
        local pgm, out = whorl.image.info(fx .. "grey16.pgm"), whorl.image.info(dir .. "/fx/grey16.pgm")
        assert.are.same({ pgm.height, pgm.width, "PNM", 16 }, { out.height, out.width, out.format, out.depth })
    end)

    it("gives a restored print that differs from its input (the model ran)", function()
        restore.run({ "--quiet", "--model", model_path, dir .. "/in/a.bmp", "--out", dir .. "/one" })
        local a, b = whorl.image.read(dir .. "/in/a.bmp"), whorl.image.read(dir .. "/one/a.bmp")
        assert.is_true(max_diff(a, b) > 0.05)
    end)

    it("says clearly when the model is missing or not a model", function()
        local text, code = run(shell.whorl() .. "restore --model " .. dir .. "/nope.safetensors " .. dir ..
            "/in/a.bmp --out " .. dir .. "/x")
        assert.are.equal(1, code)
        assert.matches("whorl restore: model file not found: " .. dir .. "/nope.safetensors", text, 1, true)
        local ok, err = pcall(restore.run, { "--model", dir .. "/in/a.bmp", dir .. "/in/a.bmp", "--out", dir .. "/x" })
        assert.is_false(ok)
        assert.matches("whorl restore: " .. dir .. "/in/a.bmp is not a whorl model checkpoint", err, 1, true)
    end)

    it("takes the tile size from config.json, or asks for --size", function()
        local unet = require "unet"
        local run_dir = dir .. "/unet"
        os.execute("mkdir -p '" .. run_dir .. "'")
        whorl.save(unet{ depth = 1, filters = 4, seed = 1 }, run_dir .. "/model.safetensors")
        local argv = { "--quiet", "--model", run_dir .. "/model.safetensors", dir .. "/in/a.bmp", "--out", dir .. "/u" }
        local ok, err = pcall(restore.run, argv)
        assert.is_false(ok)
        assert.matches("give --size N", err, 1, true)
        files.spit(run_dir .. "/config.json", cjson.encode({ size = 16, dpi = 500 }))
        restore.run(argv)
        assert.are.same({ 50, 70 }, whorl.image.read(dir .. "/u/a.bmp"):size())
        -- prints scanned at 1000 dpi go through the model at its 500 dpi and come back at their size
        table.insert(argv, 1, "--dpi=1000")
        restore.run(argv)
        assert.are.same({ 50, 70 }, whorl.image.read(dir .. "/u/a.bmp"):size())
        ok, err = pcall(restore.run, { "--quiet", "--model", model_path, "--size", "24", dir .. "/in/a.bmp",
            "--out", dir .. "/u" })
        assert.is_false(ok)
        assert.matches("--size 24 does not fit the model, which takes 32x32 images", err, 1, true)
    end)

    it("refuses to overwrite its inputs and to write where it cannot", function()
        local ok, err = pcall(restore.run, { "--quiet", "--model", model_path, dir .. "/in/a.bmp", "--out", dir .. "/in" })
        assert.is_false(ok)
        assert.matches("1 of 1 input failed", err, 1, true)
        assert.are.same({ 50, 70 }, whorl.image.read(dir .. "/in/a.bmp"):size())
        files.spit(dir .. "/file", "x")
        ok, err = pcall(restore.run, { "--quiet", "--model", model_path, dir .. "/in/a.bmp", "--out", dir .. "/file/o" })
        assert.is_false(ok)
        assert.matches("cannot create the output folder " .. dir .. "/file/o", err, 1, true)
    end)
end)
