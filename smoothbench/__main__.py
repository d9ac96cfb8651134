from smoothbench.cli import main

main()
