from qwenlocal.cli import main

main()
