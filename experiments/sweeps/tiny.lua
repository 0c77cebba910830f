-- Two tiny runs that finish in seconds (tests/sweep_spec.lua runs it).
return {
    base = { model = "autoencoder224", size = 32, fingers = 8, impressions = 2, test_fingers = 2,
        epochs = 1, batch_size = 8, seed = 3 },
    grid = { filters = { { 4 }, { 4, 8 } } },
}
