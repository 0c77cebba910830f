-- Depth and width of the seed autoencoder, and its kernel size: 6 runs on
-- a small synthetic set (64 px prints, 100 fingers x 4 impressions, 20
-- other fingers to test), from half a minute to a few minutes each on one core.
--   bin/whorl sweep experiments/sweeps/filters.lua --out out/sweep-filters --workers 2
return {
    base = { model = "autoencoder224", size = 64, fingers = 100, impressions = 4, test_fingers = 20,
        epochs = 8, batch_size = 16, loss = "mse", optimizer = "rmsprop", lr = 0.001, seed = 13 },
    grid = {
        filters = { { 16, 32 }, { 32, 64 }, { 16, 32, 64 } },   -- one entry per level: the depth
        kernel_size = { 3, 5 },
    },
}
