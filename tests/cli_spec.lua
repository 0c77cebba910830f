-- bin/whorl: the synth command writes a usable dataset folder, and bad
-- arguments fail with a message and a non-zero status.
local whorl = require "whorl"
local files = require "helpers.files"
local slurp = files.slurp

local function run(cmd)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("a")
    local ok, _, code = p:close()
    return out, ok and 0 or code
end

local function tmpdir()
    local p = io.popen("mktemp -d")
    local d = p:read("l")
    p:close()
    return d
end

local function read_csv(path)
    local rows, header = {}, nil
    for line in io.lines(path) do
        local fields = {}
        for f in (line .. ","):gmatch("([^,]*),") do fields[#fields + 1] = f end
        if not header then header = fields else
            local row = {}
            for i, name in ipairs(header) do row[name] = fields[i] end
            rows[#rows + 1] = row
        end
    end
    return rows, header
end

describe("whorl synth", function()
    it("writes images, clean copies, masks and an index that agree with each other", function()
        local dir = tmpdir()
        local out, code = run("bin/whorl synth --count 4 --impressions 2 --size 40x36 --damage erasure,blur " ..
            "--level hard --seed 5 --out " .. dir)
        assert.are.equal(0, code, out)
        local rows, header = read_csv(dir .. "/index.csv")
        assert.are.same({"file", "finger", "impression", "class", "damage", "level", "clean_file", "mask_file"}, header)
        assert.are.equal(4, #rows)
        for i, r in ipairs(rows) do
            assert.are.equal(tostring((i - 1) // 2), r.finger)
            assert.are.equal(tostring((i - 1) % 2), r.impression)
            assert.truthy(r.damage == "erasure" or r.damage == "blur", r.damage)
            assert.are.equal("hard", r.level)
            local img = whorl.image.read(dir .. "/" .. r.file)
            local clean = whorl.image.read(dir .. "/" .. r.clean_file)
            local mask = whorl.image.read(dir .. "/" .. r.mask_file)
            assert.are.same({40, 36}, img:size())
            -- outside the mask the damaged print is the clean one (to 8-bit rounding)
            local outside = ((img - clean):abs() * (1 - mask)):max():item()
            assert.is_true(outside <= 1 / 255 + 1e-6, "pixels outside the mask changed by " .. outside)
            assert.is_true(mask:sum():item() > 0, "the damage changed nothing")
        end
    end)

    it("writes the same bytes for the same seed and others for another", function()
        local a, b, c = tmpdir(), tmpdir(), tmpdir()
        for _, d in ipairs({{a, 9}, {b, 9}, {c, 10}}) do
            local out, code = run(("bin/whorl synth --count 2 --size 32 --seed %d --format tif --out %s"):format(d[2], d[1]))
            assert.are.equal(0, code, out)
        end
        assert.are.equal(slurp(a .. "/000002.tif"), slurp(b .. "/000002.tif"))
        assert.are_not.equal(slurp(a .. "/000002.tif"), slurp(c .. "/000002.tif"))
        assert.are.equal("", read_csv(a .. "/index.csv")[1].damage)
    end)

    it("rejects bad arguments with a message", function()
        local dir = tmpdir()
        local out, code = run("bin/whorl synth --count -3 --out " .. dir)
        assert.are_not.equal(0, code)
        assert.truthy(out:find("--count", 1, true), out)
        out, code = run("bin/whorl synth --count 2 --size big --out " .. dir)
        assert.are_not.equal(0, code)
        assert.truthy(out:find("--size", 1, true), out)
        out, code = run("bin/whorl synth --count 1 --damage nosuchdamage --out " .. dir)
        assert.are_not.equal(0, code)
        assert.truthy(out:find("nosuchdamage", 1, true), out)
        out, code = run("bin/whorl frobnicate")
        assert.are.equal(2, code)
        assert.truthy(out:find("commands: classify, gradcam, reconstruct, restore, sweep, synth", 1, true), out)
    end)
end)
