from srl_rlvr.cli import main

main()
