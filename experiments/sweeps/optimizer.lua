-- A random search over the optimizer, learning rate and loss of the masked
-- U-Net: 8 draws, reproducible from the seed (--samples/--seed override).
--   bin/whorl sweep experiments/sweeps/optimizer.lua --out out/sweep-optimizer --workers 2
return {
    base = { model = "masked", size = 64, fingers = 100, impressions = 4, test_fingers = 20, epochs = 8,
        filters = { 16, 32 }, seed = 13 },
    random = {
        samples = 8, seed = 1,
        space = {
            optimizer = { "adam", "adamw", "rmsprop" },
            lr = { min = 1e-4, max = 3e-3, log = true },
            loss = { "mse", "l1", "mse+ssim" },
        },
    },
}
