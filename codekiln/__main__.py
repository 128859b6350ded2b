from codekiln.cli import main

main()
