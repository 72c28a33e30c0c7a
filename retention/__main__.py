from retention.cli import main

main()
