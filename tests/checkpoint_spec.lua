-- whorl.save/whorl.load and the safetensors reader/writer: round trips of
-- model, optimizer, loss, epoch, history and RNG state; rebuilding in a
-- fresh interpreter; the file Python's safetensors wrote
-- (fixtures/make_safetensors_fixture.py); atomic replacement; and the
-- errors for missing, short, truncated, foreign, corrupt and ill-fitting files.
local whorl = require "whorl"
local nn = require "whorl.nn"
local optim = require "whorl.optim"
local checkpoint = require "whorl.checkpoint"
local autoencoder = require "autoencoder224"
local files = require "helpers.files"
local slurp, spit, same_state = files.slurp, files.spit, files.same_state
local shell = require "helpers.shell"
local check = require "helpers.check"
local raises = check.raises

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local FIXTURE = HERE .. "fixtures/safetensors/python_written.safetensors"

local tmpdir
local function tmp(name) return tmpdir .. "/" .. name end

-- A small model trained a few RMSprop steps, so the optimizer has slots.
local function trained(seed)
    nn.clear_session()
    local m = autoencoder{ input_size = 16, filters = { 4, 8 }, seed = seed or 1 }
    local opt = optim.RMSprop(m, { lr = 0.002 })
    whorl.manual_seed(seed or 1)
    local x = whorl.rand({ 3, 1, 16, 16 })
    for _ = 1, 3 do
        opt:zero_grad()
        whorl.mse_loss(m(x), x):backward()
        opt:step()
    end
    return m, opt, x
end

setup(function() tmpdir = shell.tmpdir() end)
teardown(function() if tmpdir then shell.remove(tmpdir) end end)

describe("whorl.save / whorl.load", function()
    it("round-trips model, optimizer, loss, epoch, history and RNG state", function()
        local m, opt, x = trained(1)
        local history = { epoch = { 1, 2 }, loss = { 0.125, 0 / 0 }, val_loss = { 0.1, math.huge } }
        local rng = whorl.get_rng_state()
        whorl.save(m, tmp("a.safetensors"), { optimizer = opt, epoch = 2, history = history,
            loss = 0.84 * nn.losses.L1() + 0.16 * nn.losses.SSIM(), metadata = { note = "hi" } })
        whorl.manual_seed(123)
        local m2, ck = whorl.load(tmp("a.safetensors"), { restore_rng = true })
        assert.are.equal(rng, whorl.get_rng_state())
        assert.are_not.equal(m, m2)
        assert.is_true(same_state(m, m2))
        assert.are.equal(m:get(2).name, m2:get(2).name)
        assert.are.equal(m.name, m2.name)
        assert.are.equal(2, ck.epoch)
        assert.are.equal(0.125, ck.history.loss[1])
        assert.is_true(ck.history.loss[2] ~= ck.history.loss[2])
        assert.are.equal(math.huge, ck.history.val_loss[2])
        assert.are.equal("hi", ck.metadata.note)
        assert.are.equal("Sum", ck.loss.type)
        -- the optimizer: same kind, hyperparameters and every slot byte for byte
        local o2 = ck.optimizer
        assert.are.equal("RMSprop", o2.kind)
        assert.are.equal(0.002, o2.lr)
        local sd1, keys = opt:state_dict()
        local sd2 = o2:state_dict()
        assert.are.equal(3, sd2.iterations)
        for _, k in ipairs(keys) do
            if whorl.is_tensor(sd1[k]) then
                assert.are.equal(sd1[k]:bytes(), sd2[k]:bytes(), k)
            else
                assert.are.equal(sd1[k], sd2[k], k)
            end
        end
        -- and the rebuilt pair trains on exactly like the original
        for _, pair in ipairs({ { m, opt }, { m2, o2 } }) do
            pair[2]:zero_grad()
            whorl.mse_loss(pair[1](x), x):backward()
            pair[2]:step()
        end
        assert.is_true(same_state(m, m2))
    end)

    it("rebuilds the model in a fresh interpreter without the script that made it", function()
        local m = trained(2)
        whorl.save(m, tmp("fresh.safetensors"))
        whorl.manual_seed(4)
        local x = whorl.rand({ 2, 1, 16, 16 })
        checkpoint.write(tmp("input.safetensors"), { { "x", x } })
        local want = string.format("%016x", whorl.hash64(whorl.predict(m, x):bytes()))
        -- only whorl itself on the path: no models/ folder, no autoencoder224
        local code = [[
            local whorl = require "whorl"
            local ck = require "whorl.checkpoint"
            local m = whorl.load(arg[1])
            local x = ck.read(arg[2]).tensors.x
            io.write(string.format("%016x %s", whorl.hash64(whorl.predict(m, x):bytes()), m.name))
        ]]
        spit(tmp("fresh.lua"), code)
        -- LUA_CPATH (and LD_PRELOAD under the sanitizers) are inherited, so
        -- the child loads the very build the spec runs against.
        local cmd = string.format("LUA_PATH='lua/?.lua;lua/?/init.lua;;' " ..
            "lua5.4 %s %s %s 2>&1", tmp("fresh.lua"), tmp("fresh.safetensors"), tmp("input.safetensors"))
        local p = io.popen(cmd)
        local out = p:read("a")
        p:close()
        assert.are.equal(want .. " " .. m.name, out)
    end)

    it("keeps weights only when asked, and then needs the model", function()
        local m = trained(3)
        whorl.save(m, tmp("w.safetensors"), { weights_only = true })
        raises(function() whorl.load(tmp("w.safetensors")) end, "w.safetensors", "weights only",
            "{model = m}")
        nn.clear_session()
        local other = autoencoder{ input_size = 16, filters = { 4, 8 }, seed = 9 }
        local back = whorl.load(tmp("w.safetensors"), { model = other })
        assert.are.equal(other, back)
        assert.is_true(same_state(m, other))
    end)

    it("replaces the file atomically: a reader of the old file still sees all of it", function()
        local m = trained(4)
        local path = tmp("atomic.safetensors")
        whorl.save(m, path, { epoch = 1 })
        local old = slurp(path)
        local reader = assert(io.open(path, "rb"))
        local m2 = trained(5)
        whorl.save(m2, path, { epoch = 2 })
        assert.are.equal(old, reader:read("a"))  -- the old inode, untouched
        reader:close()
        local _, ck = whorl.load(path)
        assert.are.equal(2, ck.epoch)
        -- no temporary files are left behind, after success or failure
        raises(function() whorl.save(m2, path, { metadata = { note = 5 } }) end, "strings")
        raises(function() whorl.save(m2, tmp("no/such/dir/x.safetensors")) end, "no/such/dir")
        local p = io.popen("ls -a '" .. tmpdir .. "'")
        local listing = p:read("a")
        p:close()
        assert.falsy(listing:find(".tmp", 1, true), listing)
        local _, ck2 = whorl.load(path)
        assert.are.equal(2, ck2.epoch)
    end)

    it("refuses bad arguments", function()
        local m, opt = trained(1)
        raises(function() whorl.save({}, tmp("x")) end, "model")
        raises(function() whorl.save(m, tmp("x"), { optimiser = opt }) end, "unknown option 'optimiser'")
        raises(function() whorl.save(m, tmp("x"), { metadata = { epoch = "3" } }) end, "'epoch'",
            "whorl's own")
        raises(function() whorl.save(m, tmp("x"), { loss = function() end }) end, "loss")
        raises(function() whorl.save(m, tmp("x"), { history = { f = function() end } }) end,
            "history", "function")
    end)
end)

describe("files written by Python's safetensors", function()
    -- fixtures/make_safetensors_fixture.py: ((k * step) % mod - shift) / scale
    local function values(n, step, mod, shift, scale)
        local v = {}
        for k = 0, n - 1 do v[k + 1] = ((k * step) % mod - shift) / scale end
        return v
    end
    local function fixture_model()
        return nn.Sequential{ nn.Conv2d(1, 3, 3, { padding = "same", activation = "relu" }),
            nn.Conv2d(3, 1, 3, { padding = 1, activation = "sigmoid" }) }
    end

    it("are read whatever order the tensors were laid out in", function()
        local f = checkpoint.read(FIXTURE)
        assert.are.equal("python safetensors", f.metadata.writer)
        assert.are.equal("extra.f64", f.names[1])  -- the library puts 8-byte dtypes first
        local f64 = f.tensors["extra.f64"]
        assert.are.equal("float64", f64:dtype())
        local got = f64:totable()
        for k = 0, 4 do assert.are.equal(0.1 * k, got[k + 1]) end
        local u8 = f.tensors["extra.u8"]
        assert.are.equal("uint8", u8:dtype())
        assert.are.same({ 5, 5 }, u8:size())
        assert.are.equal(240, u8:totable()[5][5])
    end)

    it("load into a model with {model = m}, giving PyTorch's output", function()
        raises(function() whorl.load(FIXTURE) end, FIXTURE, "without whorl's metadata", "{model = m}")
        raises(function() whorl.load(FIXTURE, { model = fixture_model() }) end,
            "do not fit the model", "unexpected", "expected.output")
        local m, info = whorl.load(FIXTURE, { model = fixture_model(), strict = false })
        assert.are.equal("whorl fixture", info.metadata.note)
        local function check(t, want)
            local got = t:view(-1):totable()
            assert.are.equal(#want, #got)
            for i = 1, #want do assert.are.equal(want[i], got[i]) end
        end
        check(m:get(1).weight, values(27, 7, 13, 6, 16))
        check(m:get(1).bias, values(3, 1, 3, 1, 8))
        check(m:get(2).weight, values(27, 5, 11, 5, 32))
        check(m:get(2).bias, { 0.25 })
        local f = checkpoint.read(FIXTURE)
        local y = whorl.predict(m, f.tensors["expected.input"])
        local diff = (y - f.tensors["expected.output"]):abs():max():item()
        assert.is_true(diff < 1e-6, "max |whorl - torch| = " .. diff)
    end)
end)

describe("checkpoint.write / checkpoint.read", function()
    it("store float32, float64, uint8, scalar and empty tensors with an 8-aligned header", function()
        local a = whorl.arange(0, 6):view(2, 3)
        local b = whorl.tensor({ 1 / 3, -2.5 }, "float64")
        local c = whorl.arange(0, 4):byte()
        local s = whorl.tensor(7.5)
        local e = whorl.zeros({ 0, 3 })
        local strided = whorl.arange(0, 12):view(3, 4):transpose(1, 2)
        checkpoint.write(tmp("low.safetensors"), { { "a", a }, { "b", b }, { "c", c }, { "s", s },
            { "e", e }, { "t", strided } }, { k = "v" })
        local raw = slurp(tmp("low.safetensors"))
        local hlen = string.unpack("<I8", raw)
        assert.are.equal(0, (8 + hlen) % 8)
        local f = checkpoint.read(tmp("low.safetensors"))
        assert.are.same({ "a", "b", "c", "s", "e", "t" }, f.names)
        assert.are.equal("v", f.metadata.k)
        for name, t in pairs({ a = a, b = b, c = c, s = s, e = e, t = strided }) do
            local got = f.tensors[name]
            assert.are.equal(t:dtype(), got:dtype(), name)
            assert.are.same(t:size(), got:size(), name)
            assert.are.equal(t:bytes(), got:bytes(), name)
        end
    end)
end)

describe("damaged and foreign files", function()
    local good, good_bytes

    before_each(function()
        if not good then
            local m, opt = trained(6)
            good = tmp("good.safetensors")
            whorl.save(m, good, { optimizer = opt, epoch = 1 })
            good_bytes = slurp(good)
        end
    end)

    local function load_bytes(name, bytes)
        local path = tmp(name)
        spit(path, bytes)
        return function() whorl.load(path) end, path
    end

    it("name the file when it is missing, empty or too short", function()
        raises(function() whorl.load(tmp("missing.safetensors")) end, "missing.safetensors",
            "cannot open")
        local fn, path = load_bytes("empty.safetensors", "")
        raises(fn, path, "not a safetensors file", "0 bytes")
        fn, path = load_bytes("short.safetensors", "abc")
        raises(fn, path, "too short")
    end)

    it("refuse foreign files", function()
        local fn, path = load_bytes("image.png", "\137PNG\r\n\26\n" .. string.rep("\0", 64))
        raises(fn, path, "not a safetensors file", "header length")
        fn, path = load_bytes("text.txt", string.pack("<I8", 12) .. "hello world!")
        raises(fn, path, "not a safetensors file", "'{'")
        fn, path = load_bytes("json.safetensors", string.pack("<I8", 9) .. "{\"a\": 1,}")
        raises(fn, path, "not valid JSON")
        fn, path = load_bytes("bf16.safetensors", string.pack("<I8", 56) ..
            '{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}' .. "\0\0\0\0")
        raises(fn, path, "dtype BF16", "cannot load")
    end)

    it("detect truncation and trailing bytes", function()
        local fn, path = load_bytes("cut.safetensors", good_bytes:sub(1, #good_bytes - 10))
        raises(fn, path, "truncated", "need")
        local hlen = string.unpack("<I8", good_bytes)
        fn, path = load_bytes("cut_header.safetensors", good_bytes:sub(1, 8 + hlen // 2))
        raises(fn, path, "truncated")
        fn, path = load_bytes("long.safetensors", good_bytes .. "xyz")
        raises(fn, path, "3 unexpected bytes")
    end)

    it("detect corrupted data and metadata through the checksum", function()
        local hlen = string.unpack("<I8", good_bytes)
        local at = 8 + hlen + 100
        local flipped = good_bytes:sub(1, at - 1) .. string.char(good_bytes:byte(at) ~ 0x10) ..
            good_bytes:sub(at + 1)
        local fn, path = load_bytes("flip.safetensors", flipped)
        raises(fn, path, "corrupt", "checksum")
        local edited = good_bytes:gsub('"epoch":"1"', '"epoch":"7"', 1)
        assert.are_not.equal(good_bytes, edited)
        fn, path = load_bytes("edited.safetensors", edited)
        raises(fn, path, "checksum")
    end)

    it("report weights that do not fit the given model", function()
        nn.clear_session()
        local wider = autoencoder{ input_size = 16, filters = { 4, 16 }, seed = 1 }
        raises(function() whorl.load(good, { model = wider }) end, good, "do not fit the model",
            "shape mismatch", "4.weight")
        local fewer = nn.Sequential{ nn.Conv2d(1, 4, 3, { padding = "same" }) }
        raises(function() whorl.load(good, { model = fewer }) end, "unexpected", "5.weight")
        local m = trained(6)
        raises(function() whorl.load(good, { model = m, optimizer = optim.Adam(m) }) end,
            "RMSprop", "Adam")
    end)

    it("and a model's own load_state_dict names missing and mismatched entries", function()
        local m = trained(7)
        local sd = {}
        for k, v in pairs(m:state_dict()) do sd[k] = v end
        sd["2.weight"] = whorl.zeros({ 4, 1, 5, 5 })
        sd["7.bias"] = nil
        raises(function() m:load_state_dict(sd) end, "missing: 7.bias",
            "2.weight: model has [4, 1, 3, 3], given [4, 1, 5, 5]")
    end)
end)
