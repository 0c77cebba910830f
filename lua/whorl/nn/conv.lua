-- Convolution layers over whorl.conv2d / whorl.conv_transpose2d.
--
--   nn.Conv2d(in_channels, out_channels, kernel_size, {stride = 1,
--             padding = 0 | "valid" | "same" | {h, w}, dilation = 1,
--             bias = true, activation = nil | "relu" | "sigmoid" | "tanh",
--             kernel_initializer = "glorot_uniform", bias_initializer = "zeros",
--             dtype = "float32", name = ...})
--   nn.ConvTranspose2d(in_channels, out_channels, kernel_size, {stride = 1,
--             padding = 0 | "valid" | "same", output_padding = 0, ...same options})
-- Also nn.Conv2d{in_channels = 1, out_channels = 32, kernel_size = 3, ...}.
--
-- Weights are laid out as in PyTorch: (out, in, kh, kw) for Conv2d and
-- (in, out, kh, kw) for ConvTranspose2d.  A relu or sigmoid activation runs
-- inside the convolution kernel (Keras' Conv2D(activation = ...), one pass
-- over the output); tanh is applied after it.
--
-- ConvTranspose2d's padding = "same" gives an output of input * stride, as
-- Keras' Conv2DTranspose; when kernel - stride is odd the extra row and
-- column come from output_padding, at the bottom/right.
local whorl = require "whorl"
local base = require "whorl.nn.module"
local init = require "whorl.nn.initializers"

local Module, define = base.Module, base.define

local FUSED = { relu = "relu", sigmoid = "sigmoid" }

local function check_activation(type_name, act)
    if act == nil or act == "linear" or act == "none" then return nil end
    if act == "relu" or act == "sigmoid" or act == "tanh" then return act end
    error(string.format("%s: unknown activation %s (relu, sigmoid, tanh or linear)", type_name,
        tostring(act)), 0)
end

local function check_bias(type_name, b)
    if b == nil then return true end
    if type(b) ~= "boolean" then
        error(string.format("%s: bias must be a boolean, got %s", type_name, type(b)), 0)
    end
    return b
end

local function check_input(self, x)
    if not whorl.is_tensor(x) then
        error(string.format("expected a tensor input, got %s", type(x)), 0)
    end
    if x:dim() ~= 4 or x:size(2) ~= self.in_channels then
        error(string.format("expected input of shape (N, %d, H, W), got %s", self.in_channels,
            base.shape_str(x)), 0)
    end
end

local OPTIONS = { "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
    "bias", "activation", "kernel_initializer", "bias_initializer", "dtype" }
local POSITIONAL = { "in_channels", "out_channels", "kernel_size" }

-- Shared part of both constructors: reads and checks the options, creates
-- the weight (shape from weight_shape) and the bias.
local function setup(self, type_name, o, transposed)
    self.in_channels = base.check_int(type_name, "in_channels", o.in_channels)
    self.out_channels = base.check_int(type_name, "out_channels", o.out_channels)
    if o.kernel_size == nil then error(type_name .. ": kernel_size is required", 0) end
    self.kernel_size = base.check_pair(type_name, "kernel_size", o.kernel_size, 1)
    self.stride = base.check_pair(type_name, "stride", o.stride or 1, 1)
    self.dilation = base.check_pair(type_name, "dilation", o.dilation or 1, 1)
    self.activation = check_activation(type_name, o.activation)
    self.use_bias = check_bias(type_name, o.bias)
    self.kernel_initializer = o.kernel_initializer or "glorot_uniform"
    self.bias_initializer = o.bias_initializer or "zeros"
    self.dtype = o.dtype or "float32"
    local kh, kw = self.kernel_size[1], self.kernel_size[2]
    local rf = kh * kw
    local shape, fan_in, fan_out
    if transposed then
        shape = { self.in_channels, self.out_channels, kh, kw }
        fan_in, fan_out = self.out_channels * rf, self.in_channels * rf
    else
        shape = { self.out_channels, self.in_channels, kh, kw }
        fan_in, fan_out = self.in_channels * rf, self.out_channels * rf
    end
    self:register_parameter("weight", init.make(self.kernel_initializer, shape, fan_in, fan_out,
        self.dtype, type_name .. " kernel_initializer"))
    if self.use_bias then
        self:register_parameter("bias", init.make(self.bias_initializer, { self.out_channels },
            fan_in, fan_out, self.dtype, type_name .. " bias_initializer"))
    end
end

local function common_config(self)
    return {
        in_channels = self.in_channels, out_channels = self.out_channels,
        kernel_size = { self.kernel_size[1], self.kernel_size[2] },
        stride = { self.stride[1], self.stride[2] },
        dilation = { self.dilation[1], self.dilation[2] },
        bias = self.use_bias, activation = self.activation,
        kernel_initializer = base.plain_copy(self.kernel_initializer, "kernel_initializer"),
        bias_initializer = base.plain_copy(self.bias_initializer, "bias_initializer"),
        dtype = self.dtype,
    }
end

local function repr(self)
    local s = string.format("%d -> %d, %dx%d", self.in_channels, self.out_channels,
        self.kernel_size[1], self.kernel_size[2])
    if self.stride[1] ~= 1 or self.stride[2] ~= 1 then
        s = s .. string.format(", stride %dx%d", self.stride[1], self.stride[2])
    end
    local p = self.padding
    s = s .. ", padding " .. (type(p) == "table" and (p[1] .. "x" .. p[2]) or tostring(p))
    if self.activation then s = s .. ", " .. self.activation end
    return s
end

-- ---- Conv2d ---------------------------------------------------------------------------

local Conv2d = define("Conv2d", Module, { keras_type = "Conv2D", builtin = true })

function Conv2d:__init(...)
    local o = base.options("Conv2d", POSITIONAL, OPTIONS, ...)
    setup(self, "Conv2d", o, false)
    local pad = o.padding or 0
    if pad == "same" then
        for i = 1, 2 do
            local span = self.dilation[i] * (self.kernel_size[i] - 1)
            if self.stride[i] ~= 1 or span % 2 ~= 0 then
                error(string.format("Conv2d: padding 'same' needs stride 1 and an odd (dilated) " ..
                    "kernel, got kernel %dx%d, stride %dx%d", self.kernel_size[1],
                    self.kernel_size[2], self.stride[1], self.stride[2]), 0)
            end
        end
        self.padding = "same"
    elseif pad == "valid" then
        self.padding = "valid"
    else
        self.padding = base.check_pair("Conv2d", "padding", pad, 0)
    end
    -- Built once: forward passes the same table on every call.
    rawset(self, "_conv_opts", {
        stride = self.stride, dilation = self.dilation, padding = self.padding,
        activation = FUSED[self.activation],
    })
end

function Conv2d:forward(x)
    check_input(self, x)
    local y = whorl.conv2d(x, self.weight, self.bias, self._conv_opts)
    if self.activation == "tanh" then y = y:tanh() end
    return y
end

function Conv2d:config_args()
    local c = common_config(self)
    local p = self.padding
    c.padding = type(p) == "table" and { p[1], p[2] } or p
    return { c, n = 1 }
end

Conv2d.extra_repr = repr

-- ---- ConvTranspose2d ----------------------------------------------------------------

local ConvTranspose2d = define("ConvTranspose2d", Module,
    { keras_type = "Conv2DTranspose", builtin = true })

local T_OPTIONS = { table.unpack(OPTIONS) }
T_OPTIONS[#T_OPTIONS + 1] = "output_padding"

function ConvTranspose2d:__init(...)
    local o = base.options("ConvTranspose2d", POSITIONAL, T_OPTIONS, ...)
    setup(self, "ConvTranspose2d", o, true)
    local pad = o.padding or 0
    local padding, out_pad
    if pad == "same" then
        if o.output_padding ~= nil then
            error("ConvTranspose2d: output_padding is computed by padding 'same'; give one or " ..
                "the other", 0)
        end
        padding, out_pad = {}, {}
        for i = 1, 2 do
            -- out = (in - 1) * s - 2p + span + 1 + op; "same" wants in * s.
            local extent, s = self.dilation[i] * (self.kernel_size[i] - 1) + 1, self.stride[i]
            local d = extent - s
            if d >= 0 then
                padding[i], out_pad[i] = (d + 1) // 2, d % 2
            else
                padding[i], out_pad[i] = 0, -d
            end
            if out_pad[i] >= math.max(s, self.dilation[i]) then
                error(string.format("ConvTranspose2d: padding 'same' is not reachable with " ..
                    "kernel %d and stride %d", self.kernel_size[i], s), 0)
            end
        end
        self.padding = "same"
    else
        padding = pad == "valid" and { 0, 0 } or base.check_pair("ConvTranspose2d", "padding", pad, 0)
        out_pad = base.check_pair("ConvTranspose2d", "output_padding", o.output_padding or 0, 0)
        self.padding = pad == "valid" and "valid" or padding
        self.output_padding = out_pad
    end
    rawset(self, "_conv_opts", {
        stride = self.stride, dilation = self.dilation, padding = padding,
        output_padding = out_pad, activation = FUSED[self.activation],
    })
end

function ConvTranspose2d:forward(x)
    check_input(self, x)
    local y = whorl.conv_transpose2d(x, self.weight, self.bias, self._conv_opts)
    if self.activation == "tanh" then y = y:tanh() end
    return y
end

function ConvTranspose2d:config_args()
    local c = common_config(self)
    local p = self.padding
    c.padding = type(p) == "table" and { p[1], p[2] } or p
    if self.output_padding then
        c.output_padding = { self.output_padding[1], self.output_padding[2] }
    end
    return { c, n = 1 }
end

ConvTranspose2d.extra_repr = repr

return { Conv2d = Conv2d, ConvTranspose2d = ConvTranspose2d }
