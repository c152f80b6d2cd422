import sys

from velora.pretrain.train import main

sys.exit(main())
