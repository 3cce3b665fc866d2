"""The networks: exact layers (:mod:`.layers`), generators (:mod:`.generators`), and the
discriminator, encoder and VGG-19 features (:mod:`.networks`)."""
