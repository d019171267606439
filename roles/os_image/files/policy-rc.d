#!/bin/sh
# ingot.metal os_image build: no service starts inside the build chroot.
exit 101
