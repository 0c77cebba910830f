-- Complete checkpoints in the safetensors format.
--
--   whorl.save(model, path, {optimizer = opt, epoch = 12, history = h, loss = loss_fn})
--   local model, ck = whorl.load(path)     -- ck.optimizer, ck.epoch, ck.history, ck.loss, ck.rng
--   whorl.load(path, {model = m, optimizer = opt, restore_rng = true})  -- into existing objects
--
-- The file is what Python's `safetensors` reads: an 8-byte little-endian
-- header length, a JSON header (one entry per tensor: dtype, shape,
-- data_offsets; and "__metadata__", a map of string -> string), padded with
-- spaces to a multiple of 8, then the raw little-endian tensor data.
-- whorl keeps everything else in the metadata, as JSON strings:
--   whorl.format   "1" (marks a whorl checkpoint)
--   architecture   model:config(), so nn.from_config rebuilds the model
--                  without the script that defined it (absent with weights_only)
--   optimizer      {config = opt:config(), iterations, lr}; its slot tensors
--                  are stored as "optimizer/<slot>.<i>"
--   loss           the loss' config, when it has one
--   epoch, history, rng (whorl.get_rng_state()), trainer (fit's own state)
--   whorl.checksum 64-bit hash over the tensors (names, dtypes, shapes,
--                  bytes) and the other metadata: a damaged file is refused
-- Model tensors keep their state_dict names ("1.weight", "enc1.bias"), so
-- Python sees ordinary weights.  Files are written to a temporary file in
-- the same folder and renamed over the target, so a crash mid-write leaves
-- the previous checkpoint intact.
--
-- Lower level: checkpoint.write(path, {{name, tensor}, ...}, metadata) and
-- checkpoint.read(path) -> {tensors = name -> tensor, names = {...}, metadata = {...}}
-- for any safetensors file of F32, F64 or U8 tensors.
local whorl = require "whorl"
local cjson = require "cjson"
local files = require "whorl.files"

local M = {}

local MAX_HEADER = 100 * 1000 * 1000 -- the limit of Python's safetensors as well
local DTYPES = { float32 = "F32", float64 = "F64", uint8 = "U8" }
local FROM_DTYPE = { F32 = "float32", F64 = "float64", U8 = "uint8" }
local ITEM_SIZE = { F32 = 4, F64 = 8, U8 = 1 }
local OPT_PREFIX = "optimizer/"
local RESERVED = { ["whorl.format"] = true, ["whorl.checksum"] = true, architecture = true,
    optimizer = true, loss = true, epoch = true, history = true, rng = true, trainer = true }

-- The raw bytes of tensors are the machine's; safetensors is little-endian.
if string.unpack("=I4", string.pack("<I4", 1)) ~= 1 then
    error("whorl.checkpoint: this machine is big-endian; safetensors files are little-endian")
end

-- ---- JSON ------------------------------------------------------------------------------
-- cjson rounds numbers to 14 digits, which would not give back the floats
-- that went in (learning rates, losses in the history), and refuses
-- NaN/inf: metadata is encoded here with 17 digits and sorted keys (the
-- same state gives the same bytes), non-finite numbers as {"$float": "inf"}.

local function encode_string(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
            ["\t"] = "\\t" }
        return named[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
end

local function encode(v, out, where)
    local tv = type(v)
    if tv == "nil" then
        out[#out + 1] = "null"
    elseif tv == "boolean" then
        out[#out + 1] = tostring(v)
    elseif tv == "number" then
        if math.type(v) == "integer" then
            out[#out + 1] = string.format("%d", v)
        elseif v ~= v then
            out[#out + 1] = '{"$float":"nan"}'
        elseif v == math.huge or v == -math.huge then
            out[#out + 1] = v > 0 and '{"$float":"inf"}' or '{"$float":"-inf"}'
        else
            out[#out + 1] = string.format("%.17g", v)
        end
    elseif tv == "string" then
        out[#out + 1] = encode_string(v)
    elseif tv == "table" and getmetatable(v) == nil then
        local n, count, max = 0, 0, 0
        for k in pairs(v) do
            count = count + 1
            if math.type(k) == "integer" and k > 0 then
                n = n + 1
                if k > max then max = k end
            elseif type(k) ~= "string" then
                error(string.format("%s has a key of type %s", where, type(k)), 0)
            end
        end
        if n == count then -- an empty table too: a scalar's shape must be []
            out[#out + 1] = "["
            for i = 1, max do
                if i > 1 then out[#out + 1] = "," end
                encode(v[i], out, where .. "[" .. i .. "]")
            end
            out[#out + 1] = "]"
        elseif n > 0 then
            error(string.format("%s mixes list entries and named fields", where), 0)
        else
            local keys = {}
            for k in pairs(v) do keys[#keys + 1] = k end
            table.sort(keys)
            out[#out + 1] = "{"
            for i, k in ipairs(keys) do
                if i > 1 then out[#out + 1] = "," end
                out[#out + 1] = encode_string(k)
                out[#out + 1] = ":"
                encode(v[k], out, where .. "." .. k)
            end
            out[#out + 1] = "}"
        end
    else
        error(string.format("%s is a %s; only plain data can be stored", where,
            tv == "table" and "table with a metatable (an object)" or tv), 0)
    end
end

function M.json_encode(v, where)
    local out = {}
    encode(v, out, where or "value")
    return table.concat(out)
end

local function restore_specials(v)
    if type(v) ~= "table" then
        if v == cjson.null then return nil end
        return v
    end
    local f = v["$float"]
    if f ~= nil and next(v, next(v)) == nil then
        if f == "nan" then return 0 / 0 end
        if f == "inf" then return math.huge end
        if f == "-inf" then return -math.huge end
    end
    for k, x in pairs(v) do v[k] = restore_specials(x) end
    return v
end

function M.json_decode(s)
    local ok, v = pcall(cjson.decode, s)
    if not ok then return nil, tostring(v) end
    return restore_specials(v)
end

-- ---- the file format ---------------------------------------------------------------------

local function size_of(t)
    return "[" .. table.concat(t:size(), ", ") .. "]"
end

local function fail(path, fmt, ...)
    error(string.format("'%s': " .. fmt, path, ...), 0)
end

-- 64-bit hash chained over every tensor (name, dtype, shape, bytes) in
-- file order, then the metadata in key order, the checksum itself left out.
local function checksum(entries, metadata)
    local h = 0x77686f726cfe
    for _, e in ipairs(entries) do
        h = whorl.hash64(e.name .. "\0" .. e.dtype .. "\0" .. table.concat(e.shape, ",") .. "\0", h)
        h = whorl.hash64(e.bytes, h)
    end
    local keys = {}
    for k in pairs(metadata) do if k ~= "whorl.checksum" then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do h = whorl.hash64(k .. "\0" .. metadata[k] .. "\0", h) end
    return string.format("%016x", h)
end

-- entries: a list of {name, tensor}; metadata: string -> string (may be nil).
-- A whorl checkpoint's metadata gets its checksum here.
function M.write(path, entries, metadata, who)
    who = who or "checkpoint.write"
    if type(path) ~= "string" or path == "" then error(who .. ": the path must be a string", 2) end
    metadata = metadata or {}
    local meta = {}
    for k, v in pairs(metadata) do
        if type(k) ~= "string" or type(v) ~= "string" then
            error(string.format("%s: metadata must map strings to strings ('%s' is a %s)", who,
                tostring(k), type(v)), 2)
        end
        meta[k] = v
    end
    local items, seen, offset = {}, {}, 0
    for i, e in ipairs(entries) do
        local name, t = e[1], e[2]
        if type(name) ~= "string" or name == "" or name == "__metadata__" then
            error(string.format("%s: entry %d has an invalid name %s", who, i, tostring(name)), 2)
        end
        if seen[name] then error(string.format("%s: two tensors are named '%s'", who, name), 2) end
        seen[name] = true
        if not whorl.is_tensor(t) then
            error(string.format("%s: '%s' is a %s, not a tensor", who, name, type(t)), 2)
        end
        local dtype = DTYPES[t:dtype()]
        if not dtype then
            error(string.format("%s: '%s' has dtype %s, which safetensors files here do not " ..
                "hold (float32, float64, uint8)", who, name, t:dtype()), 2)
        end
        local bytes = t:bytes()
        items[i] = { name = name, dtype = dtype, shape = t:size(), bytes = bytes,
            offsets = { offset, offset + #bytes } }
        offset = offset + #bytes
    end
    if meta["whorl.format"] then meta["whorl.checksum"] = checksum(items, meta) end
    local header = {}
    for _, it in ipairs(items) do
        header[it.name] = { dtype = it.dtype, shape = it.shape, data_offsets = it.offsets }
    end
    if next(meta) then header.__metadata__ = meta end
    local json = next(header) and M.json_encode(header, "header") or "{}"
    json = json .. string.rep(" ", (8 - #json % 8) % 8)
    local chunks = { string.pack("<I8", #json), json }
    for _, it in ipairs(items) do chunks[#chunks + 1] = it.bytes end
    files.write_atomic(path, chunks, who)
end

local function is_count(v)
    return type(v) == "number" and v >= 0 and v == math.floor(v) and v < 2 ^ 53
end

-- Reads a safetensors file: {tensors = name -> tensor, names = {...} in
-- file order, metadata = string -> string}.  Every inconsistency is an
-- error naming the file.
function M.read(path)
    if type(path) ~= "string" then error("checkpoint.read: the path must be a string", 2) end
    local f, err = io.open(path, "rb")
    if not f then error(string.format("cannot open '%s': %s", path, tostring(err)), 0) end
    local ok, res = pcall(function()
        local size = f:seek("end")
        f:seek("set", 0)
        if size < 8 then
            fail(path, "not a safetensors file: %d bytes, too short for the 8-byte header length",
                size)
        end
        local hlen = string.unpack("<i8", f:read(8))
        if hlen < 2 or hlen > MAX_HEADER then
            fail(path, "not a safetensors file: the first 8 bytes give a header length of %s",
                tostring(hlen))
        end
        if hlen > size - 8 then
            fail(path, "truncated or not a safetensors file: the header should be %d bytes but " ..
                "only %d follow", hlen, size - 8)
        end
        local text = f:read(hlen)
        if text:sub(1, 1) ~= "{" then
            fail(path, "not a safetensors file: the header does not start with '{'")
        end
        local header, jerr = M.json_decode(text)
        if type(header) ~= "table" then
            fail(path, "not a safetensors file or a damaged one: the header is not valid JSON (%s)",
                tostring(jerr or "not an object"))
        end
        local data_len = size - 8 - hlen
        local metadata = {}
        if header.__metadata__ ~= nil then
            if type(header.__metadata__) ~= "table" then fail(path, "__metadata__ is not a map") end
            for k, v in pairs(header.__metadata__) do
                if type(v) ~= "string" then
                    fail(path, "metadata entry '%s' is a %s, not a string", tostring(k), type(v))
                end
                metadata[k] = v
            end
            header.__metadata__ = nil
        end
        local entries = {}
        for name, info in pairs(header) do
            if type(info) ~= "table" then fail(path, "header entry '%s' is not an object", name) end
            local dtype, shape, off = info.dtype, info.shape, info.data_offsets
            if type(dtype) ~= "string" then fail(path, "tensor '%s' has no dtype", name) end
            if not FROM_DTYPE[dtype] then
                fail(path, "tensor '%s' has dtype %s, which whorl cannot load (F32, F64, U8)",
                    name, dtype)
            end
            if type(shape) ~= "table" then fail(path, "tensor '%s' has no shape", name) end
            local numel = 1
            for i = 1, #shape do
                if not is_count(shape[i]) then
                    fail(path, "tensor '%s' has an invalid shape entry %s", name, tostring(shape[i]))
                end
                shape[i] = math.tointeger(shape[i])
                numel = numel * shape[i]
            end
            if type(off) ~= "table" or #off ~= 2 or not is_count(off[1]) or not is_count(off[2])
                or off[2] < off[1] then
                fail(path, "tensor '%s' has invalid data_offsets", name)
            end
            local b, e = math.tointeger(off[1]), math.tointeger(off[2])
            if e - b ~= numel * ITEM_SIZE[dtype] then
                fail(path, "tensor '%s' (%s, shape [%s]) needs %d bytes but its offsets span %d",
                    name, dtype, table.concat(shape, ", "), numel * ITEM_SIZE[dtype], e - b)
            end
            entries[#entries + 1] = { name = name, dtype = dtype, shape = shape, b = b, e = e }
        end
        table.sort(entries, function(x, y)
            if x.b ~= y.b then return x.b < y.b end
            return x.e < y.e
        end)
        local at = 0
        for _, en in ipairs(entries) do
            if en.b ~= at then
                fail(path, "tensor '%s' starts at byte %d of the data, where %d was expected " ..
                    "(overlapping or missing data)", en.name, en.b, at)
            end
            at = en.e
        end
        if at > data_len then
            fail(path, "truncated: the tensors need %d bytes of data but only %d follow the header",
                at, data_len)
        end
        if at < data_len then
            fail(path, "damaged: %d unexpected bytes after the last tensor", data_len - at)
        end
        local tensors, names = {}, {}
        for i, en in ipairs(entries) do
            f:seek("set", 8 + hlen + en.b)
            en.bytes = en.e > en.b and f:read(en.e - en.b) or ""
            tensors[en.name] = whorl.from_bytes(en.bytes, FROM_DTYPE[en.dtype], en.shape)
            names[i] = en.name
        end
        local want = metadata["whorl.checksum"]
        if want and checksum(entries, metadata) ~= want then
            fail(path, "corrupt: the checksum does not match (the file was damaged or changed " ..
                "after whorl wrote it)")
        end
        for _, en in ipairs(entries) do en.bytes = nil end
        return { tensors = tensors, names = names, metadata = metadata }
    end)
    f:close()
    if not ok then error(res, 0) end
    return res
end

-- ---- complete checkpoints -----------------------------------------------------------------

local function json_field(path, metadata, key)
    local s = metadata[key]
    if s == nil then return nil end
    local v, err = M.json_decode(s)
    if v == nil and s ~= "null" then fail(path, "metadata '%s' is not valid JSON (%s)", key, err) end
    return v
end

-- opts: optimizer, epoch, history, loss (a whorl.losses object), rng (true:
-- the global generator's state, the default; a string; false: none),
-- trainer (plain data, fit's state), metadata (more string -> string
-- entries), weights_only (no architecture).
function M.save(model, path, opts)
    local nn = require "whorl.nn"
    local who = "whorl.save"
    if not nn.is_module(model) then error(who .. ": the first argument must be a model", 2) end
    if type(path) ~= "string" or path == "" then error(who .. ": the path must be a string", 2) end
    opts = opts or {}
    local known = { optimizer = true, epoch = true, history = true, loss = true, rng = true,
        trainer = true, metadata = true, weights_only = true }
    for k in pairs(opts) do
        if not known[k] then error(string.format("%s: unknown option '%s'", who, tostring(k)), 2) end
    end
    local entries, meta = {}, { ["whorl.format"] = "1" }
    local function describe(key, fn)
        local ok, s = pcall(fn)
        if not ok then error(string.format("%s '%s': cannot store the %s: %s", who, path, key, s), 0) end
        meta[key] = s
    end
    for _, e in ipairs(model:named_state()) do entries[#entries + 1] = { e[1], e[2] } end
    if not opts.weights_only then
        describe("architecture", function() return M.json_encode(model:config(), "config") end)
    end
    local opt = opts.optimizer
    if opt ~= nil then
        if type(opt) ~= "table" or type(opt.state_dict) ~= "function" then
            error(who .. ": optimizer must be a whorl.optim optimizer", 2)
        end
        local sd, keys = opt:state_dict()
        local state = {}
        for _, k in ipairs(keys) do
            local v = sd[k]
            if whorl.is_tensor(v) then entries[#entries + 1] = { OPT_PREFIX .. k, v }
            else state[k] = v end
        end
        describe("optimizer", function()
            return M.json_encode({ config = opt:config(), state = state }, "optimizer")
        end)
    end
    if opts.loss ~= nil then
        if type(opts.loss) ~= "table" or type(opts.loss.config) ~= "function" then
            error(who .. ": loss must be a whorl.losses object (a plain function has no config)", 2)
        end
        describe("loss", function() return M.json_encode(opts.loss:config(), "loss") end)
    end
    if opts.epoch ~= nil then
        if math.type(opts.epoch) ~= "integer" and not (is_count(opts.epoch)) then
            error(who .. ": epoch must be an integer >= 0", 2)
        end
        meta.epoch = string.format("%d", opts.epoch)
    end
    if opts.history ~= nil then
        describe("history", function() return M.json_encode(opts.history, "history") end)
    end
    if opts.trainer ~= nil then
        describe("trainer", function() return M.json_encode(opts.trainer, "trainer") end)
    end
    local rng = opts.rng
    if rng == nil or rng == true then rng = whorl.get_rng_state() end
    if rng then meta.rng = rng end
    for k, v in pairs(opts.metadata or {}) do
        if RESERVED[k] then
            error(string.format("%s: metadata key '%s' is whorl's own; choose another", who, k), 2)
        end
        meta[k] = v
    end
    local ok, err = pcall(M.write, path, entries, meta, who)
    if not ok then error(err, 2) end
end

-- Returns model, info where info has optimizer, epoch, history, loss, rng,
-- trainer and metadata (the other string entries) when the file has them.
-- opts: model (load the weights into it instead of rebuilding; needed for
-- files without whorl's metadata, such as ones Python wrote), optimizer
-- (load its state into it), restore_rng (set the global generator from the
-- file), strict = true (every weight present and used).
function M.load(path, opts)
    local nn = require "whorl.nn"
    local who = "whorl.load"
    opts = opts or {}
    if type(path) ~= "string" then error(who .. ": the path must be a string", 2) end
    local ok, file = pcall(M.read, path)
    if not ok then error(who .. ": " .. tostring(file), 2) end
    local meta, tensors = file.metadata, file.tensors
    local function bad(fmt, ...) error(who .. ": " .. string.format("'%s': " .. fmt, path, ...), 0) end
    local model = opts.model
    if model ~= nil and not nn.is_module(model) then error(who .. ": opts.model must be a model", 2) end
    local whorl_file = meta["whorl.format"] ~= nil
    if whorl_file and meta["whorl.format"] ~= "1" then
        bad("written by a newer whorl (format %s; this one reads format 1)", meta["whorl.format"])
    end
    if not model then
        if not whorl_file then
            bad("a safetensors file without whorl's metadata (written by another program?); " ..
                "whorl.load(path, {model = m}) loads its tensors as the weights of m")
        end
        local arch = json_field(path, meta, "architecture")
        if arch == nil then
            bad("holds weights only (saved with weights_only); pass {model = m} to load them")
        end
        local built, m = pcall(nn.from_config, arch)
        if not built then bad("cannot rebuild the model: %s", tostring(m)) end
        model = m
    end
    local weights = {}
    for name, t in pairs(tensors) do
        if name:sub(1, #OPT_PREFIX) ~= OPT_PREFIX then weights[name] = t end
    end
    local loaded, lerr = pcall(model.load_state_dict, model, weights, { strict = opts.strict })
    if not loaded then bad("the weights do not fit the model: %s", tostring(lerr)) end
    local info = { metadata = {} }
    for k, v in pairs(meta) do if not RESERVED[k] then info.metadata[k] = v end end
    if not whorl_file then return model, info end

    local ostate = json_field(path, meta, "optimizer")
    if ostate ~= nil then
        local optim = require "whorl.optim"
        if type(ostate) ~= "table" or type(ostate.config) ~= "table" then
            bad("metadata 'optimizer' has no config")
        end
        local opt = opts.optimizer
        if opt == nil then
            local made, o = pcall(optim.from_config, ostate.config, model)
            if not made then bad("cannot rebuild the optimizer: %s", tostring(o)) end
            opt = o
        elseif opt.kind ~= ostate.config.type then
            bad("holds the state of a %s optimizer, not of the %s given", tostring(ostate.config.type),
                tostring(opt.kind))
        end
        local sd = {}
        for k, v in pairs(ostate.state or {}) do sd[k] = v end
        for name, t in pairs(tensors) do
            if name:sub(1, #OPT_PREFIX) == OPT_PREFIX then sd[name:sub(#OPT_PREFIX + 1)] = t end
        end
        local set, serr = pcall(opt.load_state_dict, opt, sd)
        if not set then bad("the optimizer state does not fit: %s", tostring(serr)) end
        info.optimizer = opt
    elseif opts.optimizer ~= nil then
        bad("holds no optimizer state (saved without {optimizer = ...})")
    end
    local lcfg = json_field(path, meta, "loss")
    if lcfg ~= nil then
        local losses = require "whorl.losses"
        local made, l = pcall(losses.from_config, lcfg)
        if not made then bad("cannot rebuild the loss: %s", tostring(l)) end
        info.loss = l
    end
    if meta.epoch then
        info.epoch = math.tointeger(tonumber(meta.epoch))
        if not info.epoch or info.epoch < 0 then bad("metadata 'epoch' is not an integer") end
    end
    info.history = json_field(path, meta, "history")
    info.trainer = json_field(path, meta, "trainer")
    info.rng = meta.rng
    if opts.restore_rng then
        if not info.rng then bad("holds no RNG state") end
        local set, rerr = pcall(whorl.set_rng_state, info.rng)
        if not set then bad("metadata 'rng' is invalid: %s", tostring(rerr)) end
    end
    return model, info
end

return M
