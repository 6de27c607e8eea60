"""Training: the GAN update loop with honest model selection and calibration."""
