from safepacs.cli import main

main()
