"""A class-conditional progressive GAN (PGGAN, Karras et al. 2018) for synthetic
chest X-rays of rare findings: layers, networks, growth schedule and training."""
