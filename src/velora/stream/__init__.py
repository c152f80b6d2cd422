"""Live and streaming recognition (`velora stream SOURCE CHECKPOINT`).

    dvnet.py    the DV network protocol (AEDAT 4.0 over TCP), decoded without dv-processing
"""
