from captionkit.cli import main

main()
