"""Host side of zcrx-lab: kernels, guest image, VM lifecycle, traffic and reports."""
